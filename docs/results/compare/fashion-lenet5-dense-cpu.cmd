build/sparseprox train --data idx:../shared/data/fashion-mnist --model lenet5 --pixel-scale unit --batch 128 --epochs 2 --device cpu --progress-seconds 0 --lambda 0 --lr 0.1
