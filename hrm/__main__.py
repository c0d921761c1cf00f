from hrm.cli import main

main()
