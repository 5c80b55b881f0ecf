from carebridge_notification.app import main

main()
