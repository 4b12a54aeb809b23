"""Compact CNN for 512x512 fundus images (DR grade, DME, gradability, referable CAM)."""
import torch
import torch.nn as nn

OUTPUT_NAMES = ["dr_logits", "dme_logit", "gradable_logit", "referable_cam"]


def conv_bn(cin, cout, k, s, groups=1):
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, padding=(k - s + 1) // 2 if s == 1 else k // 2,
                                   groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DSBlock(nn.Module):
    """Depthwise-separable block (dw kxk + pw 1x1), residual when shapes match."""

    def __init__(self, cin, cout, stride=1, k=3):
        super().__init__()
        self.dw = nn.Sequential(nn.Conv2d(cin, cin, k, stride, k // 2, groups=cin, bias=False),
                                nn.BatchNorm2d(cin), nn.ReLU(inplace=True))
        self.pw = nn.Sequential(nn.Conv2d(cin, cout, 1, 1, 0, bias=False), nn.BatchNorm2d(cout))
        self.res = stride == 1 and cin == cout
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        y = self.pw(self.dw(x))
        return self.act(x + y if self.res else y)


class DRNet(nn.Module):
    def __init__(self, width=1.0, n_signs=0):
        super().__init__()
        c = [int(round(v * width)) for v in (24, 48, 96, 160)]
        # two-layer stem: a full-resolution 3x3/2 conv (overlapping receptive fields, so 1-2 px
        # microaneurysms and fine new vessels are seen at every phase) then a 2x2/2 conv
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8),
                                  nn.ReLU(inplace=True),                   # 256x256
                                  nn.Conv2d(8, c[0], 2, 2, 0, bias=False), nn.BatchNorm2d(c[0]),
                                  nn.ReLU(inplace=True))                   # 128x128
        self.features = nn.Sequential(
            DSBlock(c[0], c[1], 2, 3),                                      # 64
            DSBlock(c[1], c[1], 1, 3),
            DSBlock(c[1], c[2], 2, 3),                                      # 32
            DSBlock(c[2], c[2], 1, 5),
            DSBlock(c[2], c[3], 2, 3),                                      # 16
            DSBlock(c[3], c[3], 1, 5),
            DSBlock(c[3], c[3], 1, 5),
        )
        f = c[3]
        self.ref_head = nn.Conv2d(f, 1, 1)          # per-location referable score (CAM)
        self.fc = nn.Sequential(nn.Linear(2 * f, 128), nn.ReLU(inplace=True), nn.Dropout(0.2))
        self.dr = nn.Linear(128, 5)
        self.dme = nn.Linear(128, 1)
        self.grad = nn.Linear(128, 1)
        # training-only head: which grade-3/4 signs the renderer drew (not exported; see build.lesion_signs)
        self.signs = nn.Linear(128, n_signs) if n_signs else None

    def _trunk(self, x):
        fm = self.features(self.stem(x))
        ref_map = self.ref_head(fm)                 # [N,1,16,16] logits
        pooled = torch.cat([fm.mean(dim=(2, 3)), fm.amax(dim=(2, 3))], dim=1)
        return self.fc(pooled), ref_map

    def forward_all(self, x):
        h, ref_map = self._trunk(x)
        return self.dr(h), self.dme(h), self.grad(h), ref_map

    def forward_train(self, x):
        """forward_all plus the training-only sign logits [N, n_signs]."""
        h, ref_map = self._trunk(x)
        return self.dr(h), self.dme(h), self.grad(h), ref_map, self.signs(h)

    def forward(self, x):
        dr, dme, grad, ref_map = self.forward_all(x)
        return dr, dme, grad, torch.sigmoid(ref_map)


def lse_pool(m, r=6.0):
    """Smooth max over locations of a [N,1,h,w] logit map -> [N]."""
    n = m.shape[0]
    flat = m.reshape(n, -1)
    return (torch.logsumexp(r * flat, dim=1) - torch.log(torch.tensor(float(flat.shape[1])))) / r


def count_exported_params(model):
    """Parameters in the exported graph, which leaves out the training-only sign head."""
    head = {id(p) for p in model.signs.parameters()} if model.signs is not None else set()
    return sum(p.numel() for p in model.parameters() if id(p) not in head)


def count_macs(model, size=512):
    macs = 0

    def hook(mod, inp, out):
        nonlocal macs
        if isinstance(mod, nn.Conv2d):
            macs += out.numel() // out.shape[0] * (mod.in_channels // mod.groups) * mod.kernel_size[0] * mod.kernel_size[1]
        elif isinstance(mod, nn.Linear):
            macs += mod.in_features * mod.out_features
    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, size, size))
    for h in hs:
        h.remove()
    return macs
