"""CNN probe (results/teacher-probe/README.md): a 4-layer convolutional network on the same data as teacher_probe.py."""
import sys, torch, numpy as np, time
torch.set_num_threads(1)
sys.argv = ["x", "C", sys.argv[1], "1e-3", "600", "8", "64"]
exec(open("scripts/probes/teacher_probe.py").read().split("tr, prompt, pooled = build_mini(0)")[0])
net = torch.nn.Sequential(torch.nn.Conv2d(3,48,5,padding=2), torch.nn.ReLU(), torch.nn.Conv2d(48,48,3,padding=1), torch.nn.ReLU(),
  torch.nn.Conv2d(48,48,3,padding=1), torch.nn.ReLU(), torch.nn.Conv2d(48,3,3,padding=1))
torch.nn.init.zeros_(net[-1].weight); torch.nn.init.zeros_(net[-1].bias)
opt = torch.optim.Adam(net.parameters(), 1e-3); t0=time.time()
for step in range(601):
    if step % 100 == 0:
        with torch.no_grad():
            d = np.mean([float(psnr((up + net(up*2-1)/2).clamp(0,1), hr)) for hr, up in evalset]) - bic
        print("cnn step", step, round(time.time()-t0), "delta", round(float(d),3), flush=True)
    b = [src[step * 8 + j] for j in range(8)]
    y = torch.stack([x[0] for x in b]); x = bicubic_upscale(torch.stack([x[1] for x in b]), 4)
    loss = ((x + net(x*2-1)/2) - y).abs().mean(); opt.zero_grad(); loss.backward(); opt.step()
