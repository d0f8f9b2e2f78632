"""Official metrics of every domain: COCO (``coco``), the DOTA devkit protocol (``dota``),
pedestrian MR^-2 (``pedestrian``), saliency (``saliency``) and label efficiency (``efficiency``)."""
