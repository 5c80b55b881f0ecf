from carebridge_bench.cli import main

main()
