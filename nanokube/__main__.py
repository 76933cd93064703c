import sys

from nanokube.cli.main import main

sys.exit(main())
