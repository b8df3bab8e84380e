from jetstore.cli import main

raise SystemExit(main())
