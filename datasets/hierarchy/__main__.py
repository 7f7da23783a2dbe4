"""`python -m datasets.hierarchy install-wordnet|check` (see `datasets.hierarchy.main`)."""
import sys

from datasets.hierarchy import main

sys.exit(main())
