"""`python -m chainrule`: the command-line interface."""
from chainrule.runtime.cli import main

raise SystemExit(main())
