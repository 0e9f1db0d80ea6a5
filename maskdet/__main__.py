import sys

from maskdet.cli import main

sys.exit(main())
