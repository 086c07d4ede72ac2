from movenet.cli import main

main()
