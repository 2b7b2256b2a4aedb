build/sparseprox train --data libsvm:../shared/data/mackey-glass/mg_scale.txt --model dense:6-128-128-64-1 --lr 0.1 --batch full --steps 50000 --device cpu --progress-seconds 0 --lambda 0
