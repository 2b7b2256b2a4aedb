build/sparseprox train --data idx:../shared/data/mnist --model lenet300100 --pixel-scale unit --batch 128 --epochs 5 --device cpu --progress-seconds 0 --lambda 0 --lr 0.1
