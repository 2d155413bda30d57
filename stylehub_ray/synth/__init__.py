"""Generated data: the synthetic H&M (``hm``) and Polyvore-U outfits (``outfits``) generators
in the real layouts, the H&M oracle (``oracle``) and the product-photo renderer (``render``).
"""
