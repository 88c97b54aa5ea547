"""The Fashion-MNIST DGN-AM demo: the target nets and judge (`train_nets`), and `make dgn-demo` (`demo`)."""
