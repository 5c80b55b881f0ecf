from carebridge_booking.app import main

main()
