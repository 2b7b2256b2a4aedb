build/sparseprox train --model cnn8 --data idx:../shared/data/mnist --epochs 1 --device cpu --lr 0.2 --lambda 5e-5,1e-4,1e-4,3e-4,1e-4 --progress-seconds 30
