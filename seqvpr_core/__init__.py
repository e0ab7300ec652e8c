"""seqvpr core: sequential visual place recognition without ROS.

The one data path every mode runs through::

    frame -> preprocess -> frame encoder -> feature ring -> window
          -> sequence aggregator -> map search/add -> loop-closure gate
"""

__version__ = "0.1.0"
