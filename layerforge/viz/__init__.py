"""Pictures: learning curves (`layerforge plot`), the HTML evaluation report (`layerforge report`), the
layer graph (`layerforge summary --graph`) and the one-line sparkline at the end of `train`.

matplotlib (the `layerforge[plot]` extra) is imported only inside the functions that draw; the graph
drawing needs only Graphviz's `dot` program when an image is asked for (DOT and Mermaid text need nothing).
"""
