from opos_tui.cli import main

raise SystemExit(main())
