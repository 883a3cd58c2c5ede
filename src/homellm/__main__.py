from homellm.cli import main

main()
