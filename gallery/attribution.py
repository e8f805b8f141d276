"""The numbers that define the photo analyses and that their pages state, Keras-free, so
the site names them without importing the analyses (:mod:`gallery.photos.saliency`,
:mod:`gallery.photos.faithfulness`) that compute with them.
"""

# Smilkov et al. (§3.2, Fig. 3) see the maps sharpen as samples grow and settle by about 50,
# the count their figures and code use; fewer leave visible noise, more change little.
SMOOTHGRAD_SAMPLES = 50
SMOOTHGRAD_NOISE = 0.15  # σ as a fraction of the photo's pixel range; the paper's best lie in 10–20%

KEEP = 0.3  # the share of the pixels each masked photo keeps; changing it means bumping PHOTO_SCHEMA
