"""`python -m stylehub_ray` is the `stylehub` command."""

from stylehub_ray.cli import main

raise SystemExit(main())
