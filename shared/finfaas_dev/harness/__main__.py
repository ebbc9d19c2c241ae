"""Entry point: `python -m finfaas_dev.harness --function-dir DIR (--port N | --listen-fd FD)`."""

import sys

from finfaas_dev.harness.launch import main

if __name__ == "__main__":
    sys.exit(main())
