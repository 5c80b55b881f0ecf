from carebridge_referral.app import main

main()
