from advgui.cli import main

raise SystemExit(main())
