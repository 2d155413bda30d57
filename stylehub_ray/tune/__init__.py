"""Ray Tune sweeps over the trainers (contrastive, two-tower, FND-CL): search spaces
(``spaces``), the sweep stage (``sweep``), its tables, plots and best config (``results``; the
figures are drawn by ``stylehub_ray.plots``)."""
