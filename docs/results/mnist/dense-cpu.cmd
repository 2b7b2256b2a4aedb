build/sparseprox train --data idx:../shared/data/mnist --model cnn8 --lr 0.1 --batch 128 --epochs 5 --device cpu --progress-seconds 30 --lambda 0 --save docs/results/mnist/dense-cpu.safetensors
