from hear_maeast.cli import main

main()
