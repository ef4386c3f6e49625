from fraudflow.cli.main import main

main()
