from carebridge_intake.app import main

main()
