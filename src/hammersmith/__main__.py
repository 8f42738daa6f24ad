from hammersmith.cli import main

main()
