from genbench.bench import main

raise SystemExit(main())
