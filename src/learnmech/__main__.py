import sys

from learnmech.cli import main

sys.exit(main())
