from mambaner_cli.cli import main

main()
