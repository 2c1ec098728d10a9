import sys

from ds01.cli import main

sys.exit(main())
