import sys

from galaxysim.cli import main

sys.exit(main())
