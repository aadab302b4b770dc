"""`python -m demo`: every demo into ./logs (see `demo.run_all`)."""

from demo.run_all import main

main()
