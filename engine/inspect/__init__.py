"""Looking inside a network: its filters, its feature maps, the space its
penultimate features put images in, and the image patches a unit likes best
(the "Visualizing and Understanding" lecture's first half).

Importing a module registers its method (``engine.methods`` imports them all).
"""
