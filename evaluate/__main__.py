import sys

from audioret.evaluate.cli import main

sys.exit(main())
