import sys

from recon.app.cli import main

sys.exit(main())
