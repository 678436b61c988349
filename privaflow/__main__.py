from privaflow.cli import main

main()
