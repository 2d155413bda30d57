"""Ray Tune sweeps over the trainers (contrastive, two-tower, FND-CL): search spaces
(``spaces``), the sweep stage (``sweep``), its tables and best config (``results``), plots
(``plots``)."""
