from qa_service.cli import main

raise SystemExit(main())
