from fraudflow.cli.entry import main

main()
