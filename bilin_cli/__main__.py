from bilin_cli.cli.app import main

main()
