"""Data-parallel training over MPI, in Horovod's design (``mpirun -n N layerforge train CONFIG --distributed``).

Every rank holds the whole model and takes its share of each global batch; one Allreduce of the packed
gradient buffer per step averages the gradients, so the weights stay identical on all ranks. Rank 0 writes the
run directory and shows the progress. Needs the ``mpi`` extra (mpi4py and an MPI library).
"""
