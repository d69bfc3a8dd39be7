import sys

from audioret.cli import main

sys.exit(main())
