"""Known activation functions, as data: formula (in the actsearch formula language), defaults, provenance.

Each entry is a plain dict:

    name       unique lowercase identifier
    title      display name, with common aliases ("SiLU / Swish-1")
    formula    text for ``actsearch.formula.parse_formula``
    params     parameter name -> default (initial) value; these are the learnable/tunable parameters.
               Fixed hyper-parameters are written into the formula as literals instead.
    reference  authors, title, venue (as precisely as known; no invented venues)
    year       year of the reference
    family     relu, elu, gated, smooth, sigmoidal, hard, shrink, periodic, rational, polynomial,
               adaptive, swish_search or other
    torch      None, or the ``torch.nn.functional`` function the entry equals (to 1e-5) at its default
               parameters, optionally with keyword arguments: "gelu:approximate=tanh",
               "leaky_relu:negative_slope=0.2", "prelu:weight=0.25" (weight is passed as a tensor).

Conventions: piecewise functions are written with relu/min0/max/min/abs compositions, so that their
derivatives stay free of Dirac deltas; denominators are written so that sympy can prove them nonzero
(1 + x**2, exp(...), 1 + abs(...)) wherever possible.  Where a paper initialises parameters randomly
or per layer, the defaults below are illustrative and say so in a comment.

The long-term aim is the ~400 functions of Kunc & Kléma's survey; see KUNC below.
"""
from __future__ import annotations

FAMILIES = ("relu", "elu", "gated", "smooth", "sigmoidal", "hard", "shrink", "periodic", "rational",
            "polynomial", "adaptive", "swish_search", "other")

# Shared references.
KUNC = ("Kunc & Kléma, Three decades of activations: A comprehensive survey of 400 activation functions "
        "for neural networks, arXiv:2402.09092")
SWISH = "Ramachandran, Zoph & Le, Searching for activation functions, arXiv:1710.05941 (ICLR 2018 workshop)"
ELU_PAPER = ("Clevert, Unterthiner & Hochreiter, Fast and accurate deep network learning by exponential "
             "linear units (ELUs), ICLR")
GELU_PAPER = "Hendrycks & Gimpel, Gaussian error linear units (GELUs), arXiv:1606.08415"
SILU_PAPER = ("Elfwing, Uchibe & Doya, Sigmoid-weighted linear units for neural network function approximation "
              "in reinforcement learning, Neural Networks")
TORCH7 = ("Collobert, Kavukcuoglu & Farabet, Torch7: A Matlab-like environment for machine learning, "
          "BigLearn NIPS Workshop")
ISRLU_PAPER = ("Carlile, Delamarter, Kinney, Marti & Whitney, Improving deep learning by inverse square root "
               "linear units (ISRLUs), arXiv:1710.09967")
ELISH_PAPER = "Basirat & Roth, The quest for the golden activation function, arXiv:1808.00783"
XGATE_PAPER = "Huang, Expanded gating ranges improve activation functions, arXiv:2405.20768"
ACON_PAPER = "Ma, Zhang, Liu & Sun, Activate or not: Learning customized activation, CVPR"
ERFACT_PAPER = ("Biswas, Kumar, Banerjee & Pandey, ErfAct and Pserf: Non-monotonic smooth trainable activation "
                "functions, AAAI")
SMU_PAPER = ("Biswas, Kumar, Banerjee & Pandey, Smooth maximum unit: Smooth activation function for deep "
             "networks using smoothing maximum technique, CVPR")
GOMES = ("Gomes, Ludermir & Lima, Comparison of new activation functions in neural network for forecasting "
         "financial time series, Neural Computing and Applications")
OSCILLATING = ("Noel, Bharadwaj, Muthiah-Nakarajan, Dutta & Amali, Biologically inspired oscillating "
               "activation functions can bridge the performance gap between biological and artificial "
               "neurons, arXiv:2111.04020")
BEYOND = ("Ramasinghe & Lucey, Beyond periodicity: Towards a unifying framework for activations in "
          "coordinate-MLPs, ECCV")
MOBILENETV3 = "Howard, Sandler, Chu, Chen, Chen, Tan, Wang, Zhu, Pang, Vasudevan, Le & Adam, Searching for MobileNetV3, ICCV"
PAU_PAPER = ("Molina, Schramowski & Kersting, Padé activation units: End-to-end learning of flexible activation "
             "functions in deep networks, ICLR")
PFLU_PAPER = ("Zhu, Min, Wang, Zou & Chen, PFLU and FPFLU: Two novel non-monotonic activation functions in "
              "convolutional neural networks, Neurocomputing")
SOFT_MODULUS = ("Vallés-Pérez et al., Empirical study of the modulus as activation function in computer vision "
                "applications, arXiv:2301.05993")
TANHSOFT = ("Biswas, Kumar, Banerjee & Pandey, TanhSoft - a family of activation functions combining Tanh and "
            "Softplus, arXiv:2009.03863")
EFFICIENT_BACKPROP = ("LeCun, Bottou, Orr & Müller, Efficient BackProp, Neural Networks: Tricks of the Trade")


def _survey(name: str) -> str:
    """Reference for a function taken from the survey's catalogue only (the original paper was not
    consulted; its authors are listed in the survey under this name)."""
    return f"{name}, as catalogued in {KUNC}"


# Published initialisation coefficients of Padé activation units, degree (5, 4), from the authors'
# library (ml-research/rational_activations, pau/paus_config.json): numerator a_0..a_5, denominator
# b_1..b_4.  Version A ("safe PAU", the paper's form) divides by 1 + sum_k |b_k| |x|^k, version B by
# 1 + |sum_k b_k x^k|; both denominators are >= 1.
PAU_COEFFICIENTS = {
    ("A", "relu"): ((0.029963801610813613, 0.6168978366891341, 2.37534759733888, 3.0659900472408443,
                     1.5246831881677423, 0.2528070864040542),
                    (-1.191550121923625, 4.4080487697236626, 0.9110357113686055, 0.34884977946384615)),
    ("A", "tanh"): ((-1.0804622559204184e-08, 1.0003008043819048, -2.5878199375289335e-08, 0.09632129918392647,
                     3.4775841628196104e-09, 0.0004255709234726337),
                    (-0.0013027181209176277, 0.428349017422072, 1.4524304083061898e-09, 0.010796648111337176)),
    ("A", "sigmoid"): ((0.4999992534599381, 0.25002157564685185, 0.14061924500301096, 0.049420492431596394,
                        0.00876714851885483, 0.0006442412789159799),
                       (2.1694506382753683e-09, 0.28122766100417684, 1.0123620714203357e-05, 0.017531988049946)),
    ("A", "gelu"): ((-0.0011405929606361626, 0.5040717642397966, 0.4117606717399584, 0.12113679843904002,
                     0.018615678966175966, 0.0018788058604368117),
                    (-0.038669759584149345, 0.1923668340158292, 0.02378313688354509, 2.7448616774554535e-10)),
    ("A", "swish"): ((3.054879741161051e-07, 0.5000007853744493, 0.24999783422824703, 0.05326628273219478,
                      0.005803034571292244, 0.0002751961022402342),
                     (-4.111554955950634e-06, 0.10652899335007572, -1.2690007399796238e-06, 0.0005502331264140556)),
    ("B", "leaky_relu"): ((0.03355815890668059, 0.5049940948281444, 1.6534163637528791, 2.0099850112036783,
                           0.9318900490866645, 0.1524224383838956),
                          (-5.748546580824416e-05, 3.9802477853818083, -4.2529808614931225e-05, 0.3018338162009311)),
    ("B", "relu"): ((0.033897129202224346, 0.4999985439606278, 1.6701363611130988, 1.9901021632350815,
                     0.9413089613384323, 0.1509133373584318),
                    (-2.1040152094202414e-05, 3.980247851167207, -3.166344237241501e-05, 0.30183382300945066)),
    ("B", "tanh"): ((2.1172949817857366e-09, 0.9999942495075363, 6.276332768876106e-07, 0.10770864506559906,
                     2.946556898117109e-08, 0.000871124373591946),
                    (6.376908337817277e-07, 0.44101418051922986, 2.2747661404467182e-07, 0.014581039909092108)),
    ("B", "sigmoid"): ((0.5000000002774382, 0.2500039727332485, 0.05544474230118124, 0.006888449237990345,
                        0.00048491391666921244, 1.5646015289718136e-05),
                       (7.956371345839366e-06, 0.11088550952772189, 7.76547864226066e-07, 0.0009697684428133153)),
    ("B", "gelu"): ((-0.0004221071456647063, 0.49999955516606254, 0.40270535451115536, 0.07366976895222031,
                     -0.012954788054484537, -0.0037414002583076983),
                    (4.9585381197087913e-05, 0.1472977407631199, 1.1645825701440633e-05, -0.007483871514842074)),
    ("B", "swish"): ((3.2597006782059475e-07, 0.500000007624051, 0.2500169540800127, 0.05327519598927768,
                      0.005804580590860159, 0.00027529600705133663),
                     (3.917294261258692e-05, 0.1065308384054887, 3.7991514117509955e-06, 0.0005503052126186067)),
}


def _pau_formula(version: str, target: str) -> str:
    num, den = PAU_COEFFICIENTS[(version, target)]
    p = " + ".join(f"({a!r})*x**{k}" for k, a in enumerate(num))
    if version == "A":
        q = "1 + " + " + ".join(f"{abs(b)!r}*abs(x)**{k}" for k, b in enumerate(den, start=1))
    else:
        q = "1 + abs(" + " + ".join(f"({b!r})*x**{k}" for k, b in enumerate(den, start=1)) + ")"
    return f"({p})/({q})"


CATALOG_ENTRIES: list[dict] = [
    # ---- ReLU family ------------------------------------------------------------------------------
    dict(name="relu", title="ReLU", formula="relu(x)", params={},
         reference="Nair & Hinton, Rectified linear units improve restricted Boltzmann machines, ICML",
         year=2010, family="relu", torch="relu"),
    dict(name="leaky_relu", title="Leaky ReLU (slope 0.01)", formula="leaky_relu(x)", params={},
         reference="Maas, Hannun & Ng, Rectifier nonlinearities improve neural network acoustic models, "
                   "ICML Workshop on Deep Learning for Audio, Speech and Language Processing",
         year=2013, family="relu", torch="leaky_relu"),
    dict(name="leaky_relu_02", title="Leaky ReLU (slope 0.2, DCGAN)", formula="max(x, 0.2*x)", params={},
         reference="Radford, Metz & Chintala, Unsupervised representation learning with deep convolutional "
                   "generative adversarial networks, ICLR",
         year=2016, family="relu", torch="leaky_relu:negative_slope=0.2"),
    dict(name="prelu", title="PReLU", formula="relu(x) + a*min0(x)", params={"a": 0.25},
         reference="He, Zhang, Ren & Sun, Delving deep into rectifiers: Surpassing human-level performance on "
                   "ImageNet classification, ICCV",
         year=2015, family="relu", torch="prelu:weight=0.25"),
    # RReLU samples the negative slope from U(1/8, 1/3) in training; at inference it uses the mean 11/48.
    dict(name="rrelu", title="RReLU (inference form, mean slope 11/48)", formula="relu(x) + 11/48*min0(x)",
         params={},
         reference="Xu, Wang, Chen & Li, Empirical evaluation of rectified activations in convolutional network, "
                   "arXiv:1505.00853",
         year=2015, family="relu", torch="rrelu"),
    # Very leaky ReLU: negative slope 1/a with a = 5.5, as evaluated in the RReLU paper.
    dict(name="very_leaky_relu", title="Very leaky ReLU (slope 1/5.5)", formula="max(x, x/5.5)", params={},
         reference="Xu, Wang, Chen & Li, Empirical evaluation of rectified activations in convolutional network, "
                   "arXiv:1505.00853",
         year=2015, family="relu", torch="leaky_relu:negative_slope=0.18181818181818182"),
    # Bounded ReLU min(max(0, x), a); the cap a is a hyper-parameter (a = 6 is ReLU6), 1 here.
    dict(name="brelu", title="Bounded ReLU (BReLU, cap a=1)", formula="min(relu(x), a)", params={"a": 1.0},
         reference="Liew, Khalil-Hani & Bakhteri, Bounded activation functions for enhanced training stability of "
                   "deep neural networks on visual pattern recognition problems, Neurocomputing",
         year=2016, family="relu", torch=None),
    dict(name="relu6", title="ReLU6", formula="relu6(x)", params={},
         reference="Krizhevsky, Convolutional deep belief networks on CIFAR-10, unpublished manuscript",
         year=2010, family="relu", torch="relu6"),
    dict(name="squared_relu", title="Squared ReLU (ReLU², Primer)", formula="relu(x)**2", params={},
         reference="So, Mańke, Liu, Dai, Shazeer & Le, Primer: Searching for efficient transformers for language "
                   "modeling, NeurIPS",
         year=2021, family="relu", torch=None),
    dict(name="star_relu", title="StarReLU", formula="s*relu(x)**2 + b", params={"s": 0.8944, "b": -0.4472},
         reference="Yu, Si, Zhou, Luo, Zhou, Feng, Yan & Wang, MetaFormer baselines for vision, "
                   "IEEE TPAMI (arXiv:2210.13452)",
         year=2022, family="relu", torch=None),
    dict(name="repu_cubic", title="RePU (rectified power unit, p=3)", formula="relu(x)**3", params={},
         reference="Li, Tang & Yu, Better approximations of high dimensional smooth functions by deep neural "
                   "networks with rectified power units, Communications in Computational Physics",
         year=2020, family="polynomial", torch=None),
    # SmeLU: 0 for x <= -beta, (x+beta)^2/(4 beta) for |x| <= beta, x for x >= beta.
    dict(name="smelu", title="SmeLU (smooth ReLU)",
         formula="(min(max(x, -beta), beta) + beta)**2/(4*beta) + relu(x - beta)", params={"beta": 1.0},
         reference="Shamir, Lin & Coviello, Smooth activations and reproducibility in deep networks, "
                   "arXiv:2010.09931",
         year=2020, family="relu", torch=None),
    dict(name="shifted_relu", title="Shifted ReLU max(x, -1) (SReLU of the ELU paper)", formula="max(x, -1)",
         params={}, reference=ELU_PAPER, year=2016, family="relu", torch=None),
    dict(name="abs", title="Absolute value rectification", formula="abs(x)", params={},
         reference="Jarrett, Kavukcuoglu, Ranzato & LeCun, What is the best multi-stage architecture for object "
                   "recognition?, ICCV",
         year=2009, family="relu", torch=None),
    dict(name="frelu_flexible", title="FReLU (flexible ReLU, learnable bias)", formula="relu(x) + b",
         params={"b": 0.0},
         reference="Qiu, Xu & Cai, FReLU: Flexible rectified linear units for improving convolutional neural "
                   "networks, ICPR",
         year=2018, family="relu", torch=None),
    dict(name="nlrelu", title="NLReLU (natural-logarithm ReLU)", formula="log1p(beta*relu(x))",
         params={"beta": 1.0},
         reference="Liu, Zhang, Gao, Qu & Ji, Natural-logarithm-rectified activation function in convolutional "
                   "neural networks, arXiv:1908.03682",
         year=2019, family="relu", torch=None),

    # ---- ELU family -------------------------------------------------------------------------------
    dict(name="elu", title="ELU", formula="elu(x)", params={}, reference=ELU_PAPER, year=2016, family="elu",
         torch="elu"),
    dict(name="selu", title="SELU", formula="selu(x)", params={},
         reference="Klambauer, Unterthiner, Mayr & Hochreiter, Self-normalizing neural networks, NeurIPS",
         year=2017, family="elu", torch="selu"),
    dict(name="celu", title="CELU", formula="celu(x, alpha)", params={"alpha": 1.0},
         reference="Barron, Continuously differentiable exponential linear units, arXiv:1704.07483",
         year=2017, family="elu", torch="celu"),
    # PELU: (a/b) x for x >= 0, a (exp(x/b) - 1) for x < 0.
    dict(name="pelu", title="PELU (parametric ELU)", formula="(a/b)*relu(x) + a*expm1(min0(x)/b)",
         params={"a": 1.0, "b": 1.0},
         reference="Trottier, Giguère & Chaib-draa, Parametric exponential linear unit for deep convolutional "
                   "neural networks, ICMLA",
         year=2017, family="elu", torch=None),
    # MPELU: x for x > 0, alpha (exp(beta x) - 1) for x <= 0.
    dict(name="mpelu", title="MPELU (multiple parametric ELU)", formula="relu(x) + alpha*expm1(beta*min0(x))",
         params={"alpha": 1.0, "beta": 1.0},
         reference="Li, Fan, Li, Wu & Ming, Improving deep neural network with multiple parametric exponential "
                   "linear units, Neurocomputing",
         year=2018, family="elu", torch=None),
    # ISRLU with its hyper-parameter alpha = 1: x for x >= 0, x/sqrt(1 + alpha x^2) for x < 0.
    dict(name="isrlu", title="ISRLU (inverse square root linear unit, alpha=1)",
         formula="relu(x) + min0(x)/sqrt(1 + min0(x)**2)", params={}, reference=ISRLU_PAPER, year=2017,
         family="elu", torch=None),
    dict(name="elu_plus_one", title="ELU + 1 (linear-attention feature map)", formula="elu(x) + 1", params={},
         reference="Katharopoulos, Vyas, Pappas & Fleuret, Transformers are RNNs: Fast autoregressive "
                   "transformers with linear attention, ICML",
         year=2020, family="elu", torch=None),
    # SERLU: lambda x for x >= 0, lambda alpha x exp(x) for x < 0 (self-normalising constants).
    dict(name="serlu", title="SERLU (scaled exponentially-regularized linear unit)",
         formula="1.07862*(relu(x) + 2.90427*min0(x)*exp(min0(x)))", params={},
         reference="Zhang & Li, Effectiveness of scaled exponentially-regularized linear units (SERLUs), "
                   "arXiv:1807.10117",
         year=2018, family="elu", torch=None),
    dict(name="reu", title="REU (rectified exponential unit)", formula="relu(x) + min0(x)*exp(min0(x))",
         params={},
         reference="Ying, Su, Shan, Miao, Wang & Peng, Rectified exponential units for convolutional neural "
                   "networks, IEEE Access",
         year=2019, family="elu", torch=None),
    # P-TELU: x for x >= 0, alpha tanh(beta x) for x < 0.
    dict(name="ptelu", title="P-TELU (parametric tanh linear unit)", formula="relu(x) + alpha*tanh(beta*min0(x))",
         params={"alpha": 1.0, "beta": 1.0},
         reference="Duggal & Gupta, P-TELU: Parametric tan hyperbolic linear unit activation for deep neural "
                   "networks, ICCV Workshops",
         year=2017, family="elu", torch=None),
    # Hexpo: -a (exp(-x/b) - 1) for x >= 0, c (exp(x/d) - 1) for x < 0.
    dict(name="hexpo", title="Hexpo", formula="-a*expm1(-relu(x)/b) + c*expm1(min0(x)/d)",
         params={"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0},
         reference="Kong & Takatsuka, Hexpo: A vanishing-proof activation function, IJCNN",
         year=2017, family="elu", torch=None),
    # SLU: x for x >= 0, 2 log((exp(x) + 1)/2) for x < 0.
    dict(name="slu", title="SLU (softplus linear unit)", formula="relu(x) + 2*softplus(min0(x)) - 2*log(2)",
         params={},
         reference="Zhao, Liu, Li & Luo, A novel softplus linear unit for deep convolutional neural networks, "
                   "Applied Intelligence",
         year=2018, family="elu", torch=None),

    # ---- Gated (x times a gate) -------------------------------------------------------------------
    dict(name="silu", title="SiLU / Swish-1", formula="x*sigmoid(x)", params={}, reference=SILU_PAPER,
         year=2018, family="gated", torch="silu"),
    dict(name="swish_beta", title="Swish (learnable beta) / ACON-A; Swish search #1", formula="x*sigmoid(beta*x)",
         params={"beta": 1.0}, reference=SWISH, year=2017, family="gated", torch=None),
    # E-swish: beta x sigmoid(x); the paper recommends beta in [1, 2] and reports 1.375 among its best.
    dict(name="e_swish", title="E-swish", formula="beta*x*sigmoid(x)", params={"beta": 1.375},
         reference="Alcaide, E-swish: Adjusting activations to different network depths, arXiv:1801.07145",
         year=2018, family="gated", torch=None),
    dict(name="gelu", title="GELU (erf form)", formula="gelu(x)", params={}, reference=GELU_PAPER, year=2016,
         family="gated", torch="gelu"),
    dict(name="gelu_tanh", title="GELU (tanh approximation)", formula="gelu_tanh(x)", params={},
         reference=GELU_PAPER, year=2016, family="gated", torch="gelu:approximate=tanh"),
    dict(name="quick_gelu", title="QuickGELU (sigmoid approximation of GELU)", formula="x*sigmoid(1.702*x)",
         params={}, reference=GELU_PAPER, year=2016, family="gated", torch=None),
    dict(name="mish", title="Mish", formula="x*tanh(softplus(x))", params={},
         reference="Misra, Mish: A self regularized non-monotonic activation function, BMVC (arXiv:1908.08681)",
         year=2020, family="gated", torch="mish"),
    dict(name="phish", title="Phish", formula="x*tanh(gelu(x))", params={},
         reference="Naveen, Phish: A novel hyper-optimizable activation function", year=2022, family="gated",
         torch=None),
    dict(name="logish", title="Logish", formula="x*log1p(sigmoid(x))", params={},
         reference="Zhu, Zeng, Liu & Zhang, Logish: A new nonlinear nonmonotonic activation function for "
                   "convolutional neural network, Neurocomputing",
         year=2021, family="gated", torch=None),
    dict(name="tanhexp", title="TanhExp / TeLU", formula="x*tanh(exp(x))", params={},
         reference="Liu & Di, TanhExp: A smooth activation function with high convergence speed for lightweight "
                   "neural networks, IET Computer Vision",
         year=2021, family="gated", torch=None),
    dict(name="smish", title="Smish", formula="alpha*x*tanh(log1p(sigmoid(beta*x)))",
         params={"alpha": 1.0, "beta": 1.0},
         reference="Wang, Ren & Wang, Smish: A novel activation function for deep learning methods, Electronics",
         year=2022, family="gated", torch=None),
    dict(name="serf", title="Serf (log-softplus error activation)", formula="x*erf(softplus(x))", params={},
         reference="Nag & Bhattacharyya, SERF: Towards better training of deep neural networks using log-Softplus "
                   "ERror activation Function, WACV (arXiv:2108.09598)",
         year=2023, family="gated", torch=None),
    dict(name="pserf", title="Pserf (parametric Serf)", formula="x*erf(gamma*softplus(delta*x))",
         params={"gamma": 1.25, "delta": 0.85}, reference=ERFACT_PAPER, year=2022, family="gated", torch=None),
    dict(name="erfact", title="ErfAct", formula="x*erf(alpha*exp(beta*x))", params={"alpha": 0.75, "beta": 0.75},
         reference=ERFACT_PAPER, year=2022, family="gated", torch=None),
    dict(name="lisht", title="LiSHT (linearly scaled tanh)", formula="x*tanh(x)", params={},
         reference="Roy, Manna, Dubey & Chaudhuri, LiSHT: Non-parametric linearly scaled hyperbolic tangent "
                   "activation function for neural networks, arXiv:1901.05894",
         year=2019, family="gated", torch=None),
    # Flatten-T Swish: x sigmoid(x) + T for x >= 0, T for x < 0, with T = -0.20.
    dict(name="flatten_t_swish", title="Flatten-T Swish (T=-0.2)", formula="relu(x)*sigmoid(x) - 0.2", params={},
         reference="Chieng, Wahid, Pauline & Perla, Flatten-T Swish: A thresholded ReLU-Swish-like activation "
                   "function for deep learning, International Journal of Advances in Intelligent Informatics",
         year=2018, family="gated", torch=None),
    dict(name="pflu", title="PFLU (power function linear unit)", formula="x*(1 + x/sqrt(1 + x**2))/2", params={},
         reference="Zhu, Min, Wang, Zou & Chen, PFLU and FPFLU: Two novel non-monotonic activation functions in "
                   "convolutional neural networks, Neurocomputing",
         year=2021, family="gated", torch=None),
    # ELiSH: x sigmoid(x) for x >= 0, (exp(x) - 1) sigmoid(x) for x < 0.
    dict(name="elish", title="ELiSH", formula="(relu(x) + expm1(min0(x)))*sigmoid(x)", params={},
         reference=ELISH_PAPER, year=2018, family="gated", torch=None),
    # HardELiSH: the same with the hard sigmoid max(0, min(1, (x+1)/2)).
    dict(name="hard_elish", title="HardELiSH", formula="(relu(x) + expm1(min0(x)))*max(0, min(1, (x + 1)/2))",
         params={}, reference=ELISH_PAPER, year=2018, family="gated", torch=None),
    dict(name="sinlu", title="SinLU (sinu-sigmoidal linear unit)", formula="(x + a*sin(b*x))*sigmoid(x)",
         params={"a": 1.0, "b": 1.0},
         reference="Paul, Bandyopadhyay, Yoon, Geem & Sarkar, SinLU: Sinu-sigmoidal linear unit, Mathematics",
         year=2022, family="gated", torch=None),
    dict(name="gish", title="Gish", formula="x*log(2 - exp(-exp(x)))", params={},
         reference="Kaytan, Aydilek & Yeroğlu, Gish: A novel activation function for image classification, "
                   "Neural Computing and Applications",
         year=2023, family="gated", torch=None),
    dict(name="golu", title="GoLU (Gompertz linear unit)", formula="x*exp(-exp(-x))", params={},
         reference="Das, Safari, Adriaensen & Hutter, Gompertz linear units: Leveraging asymmetry for enhanced "
                   "learning dynamics, arXiv",
         year=2025, family="gated", torch=None),
    # ARiA-2: x * (1 + exp(-beta x))^(-alpha), the Richards-curve gate; alpha=1.5, beta=2 as in the paper.
    dict(name="aria2", title="ARiA-2", formula="x*sigmoid(beta*x)**alpha", params={"alpha": 1.5, "beta": 2.0},
         reference="Patwardhan, Ingalhalikar & Walambe, ARiA: Utilizing Richard's curve for controlling the "
                   "non-monotonicity of the activation function in deep neural nets, arXiv:1805.08878",
         year=2018, family="gated", torch=None),
    # Expanded gating (Huang 2024): a gate g(x) in [0, 1] becomes (1 + 2 alpha) g(x) - alpha, with range
    # [-alpha, 1 + alpha]; alpha is trainable and initialised at 0, so xSiLU starts as SiLU.  ATLU is the
    # paper's arctan gate, g(x) = atan(x)/pi + 1/2.
    dict(name="atlu", title="ATLU (arctan linear unit)", formula="x*(atan(x)/pi + 1/2)", params={},
         reference=XGATE_PAPER, year=2024, family="gated", torch=None),
    dict(name="xsilu", title="xSiLU (expanded-gating SiLU)", formula="x*((1 + 2*alpha)*sigmoid(x) - alpha)",
         params={"alpha": 0.0}, reference=XGATE_PAPER, year=2024, family="gated", torch=None),
    dict(name="xgelu", title="xGELU (expanded-gating GELU)",
         formula="x*((1 + 2*alpha)*(1 + erf(x/sqrt(2)))/2 - alpha)", params={"alpha": 0.0},
         reference=XGATE_PAPER, year=2024, family="gated", torch=None),
    dict(name="xatlu", title="xATLU (expanded-gating ATLU)", formula="x*((1 + 2*alpha)*(atan(x)/pi + 1/2) - alpha)",
         params={"alpha": 0.0}, reference=XGATE_PAPER, year=2024, family="gated", torch=None),
    # xIELU: alpha_p x^2 + beta x for x > 0; alpha_n (expm1(min(x, eps)) - x) + beta x for x <= 0, initialised
    # alpha_p = alpha_n = 0.8, beta = 0.5.  The paper's eps (about -1e-6, a numerical guard) is dropped here.
    dict(name="xielu", title="xIELU", formula="alpha_p*relu(x)**2 + alpha_n*(expm1(min0(x)) - min0(x)) + beta*x",
         params={"alpha_p": 0.8, "alpha_n": 0.8, "beta": 0.5},
         reference="Huang & Schlag, Deriving activation functions using integration, arXiv:2411.13010",
         year=2024, family="gated", torch=None),
    # ACON-B: (1 - p) x sigmoid(beta (1 - p) x) + p x, a smooth max(x, p x).
    dict(name="acon_b", title="ACON-B (smooth leaky ReLU)", formula="(1 - p)*x*sigmoid(beta*(1 - p)*x) + p*x",
         params={"p": 0.01, "beta": 1.0}, reference=ACON_PAPER, year=2021, family="gated", torch=None),
    # ACON-C: (p1 - p2) x sigmoid(beta (p1 - p2) x) + p2 x.  The paper learns p1, p2 per channel (random
    # init) and beta (init 1); p1 = 1, p2 = 0.25 are illustrative defaults.
    dict(name="acon_c", title="ACON-C", formula="(p1 - p2)*x*sigmoid(beta*(p1 - p2)*x) + p2*x",
         params={"p1": 1.0, "p2": 0.25, "beta": 1.0}, reference=ACON_PAPER, year=2021, family="gated",
         torch=None),
    # SMU: smooth max(x, alpha x) via erf; alpha = 0.25 fixed, mu learnable and initialised at 1e6 in the
    # authors' code.  SMU-1 smooths |x| with sqrt(x^2 + mu^2), mu initialised at 4.352665993287951e-9.
    dict(name="smu", title="SMU (smooth maximum unit)",
         formula="(1.25*x + 0.75*x*erf(mu*0.75*x))/2", params={"mu": 1e6},
         reference=SMU_PAPER, year=2022, family="gated", torch=None),
    dict(name="smu1", title="SMU-1", formula="(1.25*x + sqrt((0.75*x)**2 + mu**2))/2",
         params={"mu": 4.352665993287951e-9}, reference=SMU_PAPER, year=2022, family="gated", torch=None),

    # ---- Sigmoidal (bounded, S-shaped) ------------------------------------------------------------
    dict(name="sigmoid", title="Logistic sigmoid", formula="sigmoid(x)", params={},
         reference="Rumelhart, Hinton & Williams, Learning representations by back-propagating errors, Nature",
         year=1986, family="sigmoidal", torch="sigmoid"),
    dict(name="tanh", title="Hyperbolic tangent", formula="tanh(x)", params={},
         reference="LeCun, Bottou, Orr & Müller, Efficient BackProp, Neural Networks: Tricks of the Trade",
         year=1998, family="sigmoidal", torch="tanh"),
    dict(name="lecun_tanh", title="Scaled tanh 1.7159 tanh(2x/3) (LeCun)", formula="1.7159*tanh(2*x/3)",
         params={},
         reference="LeCun, Bottou, Orr & Müller, Efficient BackProp, Neural Networks: Tricks of the Trade",
         year=1998, family="sigmoidal", torch=None),
    # No single origin; year is that of the catalogue reference.
    dict(name="arctan", title="Arctangent", formula="atan(x)", params={}, reference="classical; catalogued in " + KUNC,
         year=2024, family="sigmoidal", torch=None),
    dict(name="erf", title="Error function", formula="erf(x)", params={},
         reference="Williams, Computing with infinite networks, NeurIPS (NIPS 9)",
         year=1997, family="sigmoidal", torch=None),
    dict(name="softsign", title="Softsign / Elliott sigmoid", formula="softsign(x)", params={},
         reference="Bergstra, Desjardins, Lamblin & Bengio, Quadratic polynomials learn better image features, "
                   "Technical report 1337, Université de Montréal (also Elliott 1993, ISR TR 93-8)",
         year=2009, family="sigmoidal", torch="softsign"),
    # ISRU with its hyper-parameter alpha = 1.
    dict(name="isru", title="ISRU (inverse square root unit, alpha=1)", formula="x/sqrt(1 + x**2)", params={},
         reference=ISRLU_PAPER, year=2017, family="sigmoidal", torch=None),
    # SQNL: x - x^2/4 on [0, 2], x + x^2/4 on [-2, 0), saturating at +-1 outside.
    dict(name="sqnl", title="SQNL (square nonlinearity)",
         formula="min(max(x, -2), 2) - min(max(x, -2), 2)*abs(min(max(x, -2), 2))/4", params={},
         reference="Wuraola & Patel, SQNL: A new computationally efficient activation function, IJCNN",
         year=2018, family="sigmoidal", torch=None),
    # Soft clipping: (1/p) log((1 + exp(p x)) / (1 + exp(p (x - 1)))), a smooth clamp to [0, 1].
    dict(name="soft_clipping", title="Soft clipping", formula="(softplus(p*x) - softplus(p*(x - 1)))/p",
         params={"p": 1.0},
         reference="Klimek & Perelstein, Neural network-based approach to phase space integration, SciPost Physics",
         year=2020, family="sigmoidal", torch=None),
    # Penalized tanh: tanh(x) for x > 0, 0.25 tanh(x) for x <= 0.
    dict(name="penalized_tanh", title="Penalized tanh", formula="tanh(relu(x)) + 0.25*tanh(min0(x))", params={},
         reference="Xu, Huang & Li, Revise saturated activation functions, ICLR workshop (arXiv:1602.05980)",
         year=2016, family="sigmoidal", torch=None),
    dict(name="probit", title="Probit (Gaussian CDF)", formula="(1 + erf(x/sqrt(2)))/2", params={},
         reference=GOMES, year=2011, family="sigmoidal", torch=None),
    dict(name="loglog", title="LogLog (Gumbel CDF)", formula="exp(-exp(-x))", params={}, reference=GOMES,
         year=2011, family="sigmoidal", torch=None),
    dict(name="cloglog", title="Complementary log-log", formula="1 - exp(-exp(x))", params={}, reference=GOMES,
         year=2011, family="sigmoidal", torch=None),
    dict(name="cloglogm", title="Modified complementary log-log", formula="1 - 2*exp(-0.7*exp(x))", params={},
         reference=GOMES, year=2011, family="sigmoidal", torch=None),
    # Mega's "laplace" attention activation: 0.5 (1 + erf((x - mu)/(sigma sqrt 2))), mu = sqrt(1/2),
    # sigma = sqrt(1/(4 pi)), chosen to approximate squared ReLU near 0.
    dict(name="laplace_mega", title="Laplace function (Mega attention activation)",
         formula="(1 + erf((x - sqrt(1/2))/(sqrt(1/(4*pi))*sqrt(2))))/2", params={},
         reference="Ma, Zhou, Kong, He, Gui, Neubig, May & Zettlemoyer, Mega: Moving average equipped gated "
                   "attention, ICLR",
         year=2023, family="sigmoidal", torch=None),
    dict(name="logsigmoid", title="LogSigmoid", formula="log_sigmoid(x)", params={}, reference=TORCH7,
         year=2011, family="sigmoidal", torch="logsigmoid"),
    dict(name="dsilu", title="dSiLU (derivative of SiLU)", formula="sigmoid(x)*(1 + x*(1 - sigmoid(x)))",
         params={}, reference=SILU_PAPER, year=2018, family="sigmoidal", torch=None),
    # Adaptive tanh (Jagtap et al.): tanh(n a x) with scale factor n = 10 and a initialised to 1/n.
    dict(name="adaptive_tanh", title="Adaptive tanh (n a x, n=10)", formula="tanh(10*a*x)", params={"a": 0.1},
         reference="Jagtap, Kawaguchi & Karniadakis, Adaptive activation functions accelerate convergence in deep "
                   "and physics-informed neural networks, Journal of Computational Physics",
         year=2020, family="adaptive", torch=None),
    dict(name="stan", title="Stan (self-scalable tanh)", formula="tanh(x) + beta*x*tanh(x)", params={"beta": 1.0},
         reference="Gnanasambandam, Shen, Chung, Yue, Sundaram & Zhang, Self-scalable tanh (Stan): Multi-scale "
                   "solutions for physics-informed neural networks, IEEE TPAMI (arXiv:2204.12589)",
         year=2023, family="adaptive", torch=None),

    # ---- Hard (piecewise-linear saturating) -------------------------------------------------------
    dict(name="hardsigmoid", title="Hard sigmoid (relu6(x+3)/6, MobileNetV3)", formula="hard_sigmoid(x)",
         params={}, reference=MOBILENETV3, year=2019, family="hard", torch="hardsigmoid"),
    dict(name="hard_sigmoid_binaryconnect", title="Hard sigmoid max(0, min(1, (x+1)/2)) (BinaryConnect)",
         formula="max(0, min(1, (x + 1)/2))", params={},
         reference="Courbariaux, Bengio & David, BinaryConnect: Training deep neural networks with binary weights "
                   "during propagations, NeurIPS",
         year=2015, family="hard", torch=None),
    dict(name="hardswish", title="Hard swish (MobileNetV3)", formula="hardswish(x)", params={},
         reference=MOBILENETV3, year=2019, family="hard", torch="hardswish"),
    dict(name="hardtanh", title="Hard tanh", formula="hard_tanh(x)", params={},
         reference="Collobert, Large scale machine learning, PhD thesis, Université Paris VI",
         year=2004, family="hard", torch="hardtanh"),

    # ---- Shrinkage --------------------------------------------------------------------------------
    dict(name="softshrink", title="Soft shrinkage (lambda=0.5)", formula="softshrink(x)", params={},
         reference="Donoho, De-noising by soft-thresholding, IEEE Transactions on Information Theory",
         year=1995, family="shrink", torch="softshrink"),
    dict(name="tanhshrink", title="Tanhshrink", formula="tanhshrink(x)", params={}, reference=TORCH7,
         year=2011, family="shrink", torch="tanhshrink"),
    # Hard shrinkage is discontinuous; its step differentiates to 0 (DiracDelta dropped, as in torch).
    dict(name="hardshrink", title="Hard shrinkage (lambda=0.5)", formula="x*heaviside(abs(x) - 0.5)", params={},
         reference="Donoho & Johnstone, Ideal spatial adaptation by wavelet shrinkage, Biometrika",
         year=1994, family="shrink", torch="hardshrink"),

    # ---- Smooth rectifiers / unbounded smooth -----------------------------------------------------
    dict(name="softplus", title="Softplus", formula="softplus(x)", params={},
         reference="Dugas, Bengio, Bélisle, Nadeau & Garcia, Incorporating second-order functional knowledge for "
                   "better option pricing, NeurIPS (NIPS 13)",
         year=2001, family="smooth", torch="softplus"),
    dict(name="shifted_softplus", title="Shifted softplus (SchNet)", formula="softplus(x) - log(2)", params={},
         reference="Schütt, Kindermans, Sauceda, Chmiela, Tkatchenko & Müller, SchNet: A continuous-filter "
                   "convolutional neural network for modeling quantum interactions, NeurIPS",
         year=2017, family="smooth", torch=None),
    dict(name="squareplus", title="Squareplus (b=4)", formula="(x + sqrt(x**2 + 4))/2", params={},
         reference="Barron, Squareplus: A softplus-like algebraic rectifier, arXiv:2112.11687",
         year=2021, family="smooth", torch=None),
    # No single origin; year is that of the catalogue reference.
    dict(name="bent_identity", title="Bent identity", formula="(sqrt(x**2 + 1) - 1)/2 + x", params={},
         reference="classical; catalogued in " + KUNC, year=2024, family="smooth", torch=None),
    # Soft exponential with alpha fixed at 0.5 (alpha > 0 branch): (exp(alpha x) - 1)/alpha + alpha.
    dict(name="soft_exponential", title="Soft exponential (alpha=0.5)", formula="2*expm1(x/2) + 0.5", params={},
         reference="Godfrey & Gashler, A continuum among logarithmic, linear, and exponential functions, and its "
                   "potential to improve generalization in neural networks, IC3K/KDIR (arXiv:1602.01321)",
         year=2015, family="smooth", torch=None),
    # Soft-root-sign: x / (x/alpha + exp(-x/beta)), alpha = 2, beta = 3 (trainable).  The denominator is
    # positive for these values but sympy cannot prove it, so it is evaluated with the eps guard.
    dict(name="soft_root_sign", title="SRS (soft-root-sign)", formula="x/(x/alpha + exp(-x/beta))",
         params={"alpha": 2.0, "beta": 3.0},
         reference="Zhou, Li, Huo & Kung, Soft-root-sign activation function, arXiv:2003.00547",
         year=2020, family="smooth", torch=None),

    # ---- Periodic / oscillating -------------------------------------------------------------------
    dict(name="sine", title="Sine", formula="sin(x)", params={},
         reference="Parascandolo, Huttunen & Virtanen, Taming the waves: sine as activation function in deep neural "
                   "networks, ICLR 2017 submission (OpenReview)",
         year=2016, family="periodic", torch=None),
    dict(name="cosine", title="Cosine (random Fourier features)", formula="cos(x)", params={},
         reference="Rahimi & Recht, Random features for large-scale kernel machines, NeurIPS",
         year=2007, family="periodic", torch=None),
    dict(name="siren", title="SIREN sine (omega0=30)", formula="sin(omega0*x)", params={"omega0": 30.0},
         reference="Sitzmann, Martel, Bergman, Lindell & Wetzstein, Implicit neural representations with periodic "
                   "activation functions, NeurIPS",
         year=2020, family="periodic", torch=None),
    dict(name="snake", title="Snake", formula="x + sin(a*x)**2/a", params={"a": 1.0},
         reference="Ziyin, Hartwig & Ueda, Neural networks fail to learn periodic functions and how to fix it, "
                   "NeurIPS",
         year=2020, family="periodic", torch=None),
    dict(name="snake_beta", title="SnakeBeta (BigVGAN)", formula="x + sin(alpha*x)**2/beta",
         params={"alpha": 1.0, "beta": 1.0},
         reference="Lee, Ping, Ginsburg, Catanzaro & Yoon, BigVGAN: A universal neural vocoder with large-scale "
                   "training, ICLR",
         year=2023, family="periodic", torch=None),
    dict(name="gcu", title="GCU (growing cosine unit)", formula="x*cos(x)", params={},
         reference="Noel, Trivedi, Dutta et al., Growing cosine unit: A novel oscillatory activation function that "
                   "can speedup training and reduce parameters in convolutional neural networks, arXiv:2108.12943",
         year=2021, family="periodic", torch=None),
    dict(name="dsu", title="DSU (decaying sine unit)", formula="pi/2*(sinc(x - pi) - sinc(x + pi))", params={},
         reference=OSCILLATING, year=2021, family="periodic", torch=None),
    dict(name="ssu", title="SSU (shifted sinc unit)", formula="pi*sinc(x - pi)", params={},
         reference=OSCILLATING, year=2021, family="periodic", torch=None),

    # ---- Rational ---------------------------------------------------------------------------------
    # Safe PAU of degree (5, 4): P(x) / (1 + sum_k |b_k| |x|^k).  Coefficients fitted by us (least squares
    # on [-3, 3], max error 0.03) to leaky ReLU(0.01), the paper's initialisation target; they are not
    # the paper's published values.
    dict(name="pau_leaky_relu", title="PAU (safe Padé unit, leaky-ReLU initialisation)",
         formula="(0.029804 + 0.618381*x + 2.322278*x**2 + 3.049134*x**3 + 1.483342*x**4 + 0.250552*x**5)"
                 "/(1 + 1.141485*abs(x) + 4.389078*x**2 + 0.870279*abs(x)**3 + 0.346538*x**4)",
         params={},
         reference="Molina, Schramowski & Kersting, Padé activation units: End-to-end learning of flexible "
                   "activation functions in deep networks, ICLR",
         year=2020, family="rational", torch=None),
    # Type (3, 2) rational initialised to the best rational approximation of ReLU on [-1, 1].
    dict(name="rational_relu", title="Rational activation (3,2), ReLU initialisation",
         formula="(1.1915*x**3 + 1.5957*x**2 + 0.5*x + 0.0218)/(2.383*x**2 + 1)", params={},
         reference="Boullé, Nakatsukasa & Townsend, Rational neural networks, NeurIPS",
         year=2020, family="rational", torch=None),

    # ---- Polynomial -------------------------------------------------------------------------------
    dict(name="square", title="Quadratic activation x^2", formula="x**2", params={},
         reference="Livni, Shalev-Shwartz & Shamir, On the computational efficiency of training neural networks, "
                   "NeurIPS",
         year=2014, family="polynomial", torch=None),
    dict(name="cube", title="Cube activation x^3", formula="x**3", params={},
         reference="Chen & Manning, A fast and accurate dependency parser using neural networks, EMNLP",
         year=2014, family="polynomial", torch=None),
    dict(name="squ", title="SQU (shifted quadratic unit)", formula="x**2 + x", params={}, reference=OSCILLATING,
         year=2021, family="polynomial", torch=None),
    dict(name="ncu", title="NCU (non-monotonic cubic unit)", formula="x - x**3", params={}, reference=OSCILLATING,
         year=2021, family="polynomial", torch=None),

    # ---- Adaptive piecewise-linear ----------------------------------------------------------------
    # APL with S = 1 hinge: max(0, x) + a max(0, -x + b); a, b are learned (illustrative defaults).
    dict(name="apl", title="APL (adaptive piecewise linear, S=1)", formula="relu(x) + a*relu(b - x)",
         params={"a": 0.25, "b": 1.0},
         reference="Agostinelli, Hoffman, Sadowski & Baldi, Learning activation functions to improve deep neural "
                   "networks, ICLR workshop (arXiv:1412.6830)",
         year=2015, family="adaptive", torch=None),
    # S-shaped ReLU: identity on [tl, tr], slopes ar / al outside.  The paper initialises tl = 0, al as
    # leaky ReLU and ar = 1; tr = 1 here is illustrative.
    dict(name="srelu", title="SReLU (S-shaped ReLU)",
         formula="min(max(x, tl), tr) + ar*relu(x - tr) + al*min0(x - tl)",
         params={"tl": 0.0, "tr": 1.0, "al": 0.2, "ar": 1.0},
         reference="Jin, Xu, Feng, Wei, Xiong & Yan, Deep learning with S-shaped rectified linear activation units, "
                   "AAAI",
         year=2016, family="adaptive", torch=None),

    # ---- Found by the Swish paper's search (besides x*sigmoid(beta*x) above) -----------------------
    dict(name="swish_max_sigmoid", title="max(x, sigmoid(x)) (Swish search)", formula="max(x, sigmoid(x))",
         params={}, reference=SWISH, year=2017, family="swish_search", torch=None),
    dict(name="swish_cos_minus_x", title="cos(x) - x (Swish search)", formula="cos(x) - x", params={},
         reference=SWISH, year=2017, family="swish_search", torch=None),
    dict(name="swish_min_sin", title="min(x, sin(x)) (Swish search)", formula="min(x, sin(x))", params={},
         reference=SWISH, year=2017, family="swish_search", torch=None),
    dict(name="swish_atan_sq_minus_x", title="atan(x)^2 - x (Swish search)", formula="atan(x)**2 - x", params={},
         reference=SWISH, year=2017, family="swish_search", torch=None),
    dict(name="swish_max_tanh", title="max(x, tanh(x)) (Swish search)", formula="max(x, tanh(x))", params={},
         reference=SWISH, year=2017, family="swish_search", torch=None),
    dict(name="swish_sinc_plus_x", title="sinc(x) + x (Swish search)", formula="sinc(x) + x", params={},
         reference=SWISH, year=2017, family="swish_search", torch=None),
    dict(name="swish_x_asinh_sq", title="x asinh(x)^2 (Swish search)", formula="x*asinh(x)**2", params={},
         reference=SWISH, year=2017, family="swish_search", torch=None),

    # ---- Other ------------------------------------------------------------------------------------
    dict(name="gaussian", title="Gaussian exp(-x^2)", formula="gaussian(x)", params={},
         reference="Broomhead & Lowe, Multivariable functional interpolation and adaptive networks, Complex Systems",
         year=1988, family="other", torch=None),
    dict(name="multiquadric", title="Multiquadric sqrt(1 + x^2)", formula="sqrt(1 + x**2)", params={},
         reference="Hardy, Multiquadric equations of topography and other irregular surfaces, Journal of "
                   "Geophysical Research",
         year=1971, family="other", torch=None),
    dict(name="mexican_hat", title="Mexican hat / Ricker wavelet", formula="(1 - x**2)*exp(-x**2/2)", params={},
         reference="Zhang & Benveniste, Wavelet networks, IEEE Transactions on Neural Networks",
         year=1992, family="other", torch=None),

    # ---- Added for issue 18 (item 4): formulas as published ----------------------------------------
    # APA (Alexandridis et al. 2024): APA(z) = z * (lam exp(-kappa z) + 1)^(1/(-lam)); kappa = lam = 1
    # is SiLU (the paper's initialisation), lam -> 0 the Gumbel gate.  "lambda" is a Python keyword: lam.
    dict(name="apa", title="APA (adaptive parametric activation)", formula="x*(lam*exp(-kappa*x) + 1)**(-1/lam)",
         params={"kappa": 1.0, "lam": 1.0},
         reference="Alexandridis, Deng, Nguyen & Luo, Adaptive parametric activation, ECCV",
         year=2024, family="adaptive", torch=None),
    # PolyReLU of order 3: sum_i a_i relu(x)^i, a_i initialised to 1/3.
    dict(name="polyrelu", title="PolyReLU (order 3, PolyCom)",
         formula="a1*relu(x) + a2*relu(x)**2 + a3*relu(x)**3",
         params={"a1": 1/3, "a2": 1/3, "a3": 1/3},
         reference="Zhuo et al., Polynomial composition activations: Unleashing the dynamics of large language "
                   "models, arXiv:2411.03884",
         year=2024, family="polynomial", torch=None),
    dict(name="leaky_relu_01", title="Leaky ReLU (slope 0.1, YOLO)", formula="max(x, 0.1*x)", params={},
         reference="Redmon, Divvala, Girshick & Farhadi, You only look once: Unified, real-time object detection, "
                   "CVPR",
         year=2016, family="relu", torch="leaky_relu:negative_slope=0.1"),
    # TLU: max(x, tau) with a learned threshold tau, initialised at 0 (= ReLU).
    dict(name="tlu", title="TLU (thresholded linear unit, FRN)", formula="max(x, tau)", params={"tau": 0.0},
         reference="Singh & Krishnan, Filter response normalization layer: Eliminating batch dependence in the "
                   "training of deep neural networks, CVPR",
         year=2020, family="relu", torch=None),
    # AReLU: (1 + sigmoid(beta)) x for x >= 0, clamp(alpha, 0.01, 0.99) x for x < 0; alpha = 0.9, beta = 2.
    dict(name="arelu", title="AReLU (attention-based ReLU)",
         formula="(1 + sigmoid(beta))*relu(x) + min(max(alpha, 0.01), 0.99)*min0(x)",
         params={"alpha": 0.9, "beta": 2.0},
         reference="Chen et al., AReLU: Attention-based rectified linear unit, arXiv:2006.13858",
         year=2020, family="relu", torch=None),
    # Elliott's sigmoid on (0, 1): x / (2 (1 + |x|)) + 1/2.
    dict(name="elliott_sigmoid", title="Elliott sigmoid (0..1 form)", formula="0.5*x/(1 + abs(x)) + 0.5",
         params={},
         reference="Elliott, A better activation function for artificial neural networks, Technical report, "
                   "University of Maryland",
         year=1993, family="sigmoidal", torch=None),
    # Bipolar sigmoid (1 - exp(-x))/(1 + exp(-x)) = 2 sigmoid(x) - 1 = tanh(x/2).
    dict(name="bipolar_sigmoid", title="Bipolar sigmoid", formula="2*sigmoid(x) - 1", params={},
         reference="classical; catalogued in " + KUNC, year=2024, family="sigmoidal", torch=None),
    dict(name="rootsig", title="Rootsig x/(1 + sqrt(1 + x^2))", formula="x/(1 + sqrt(1 + x**2))", params={},
         reference="classical; catalogued in " + KUNC, year=2024, family="sigmoidal", torch=None),
    dict(name="hard_sigmoid_quarter", title="Hard sigmoid max(0, min(1, x/4 + 1/2)) (noisy activations)",
         formula="max(0, min(1, 0.25*x + 0.5))", params={},
         reference="Gulcehre, Moczulski, Denil & Bengio, Noisy activation functions, ICML",
         year=2016, family="hard", torch=None),
    dict(name="hard_sigmoid_keras", title="Hard sigmoid max(0, min(1, 0.2 x + 0.5)) (Keras 2)",
         formula="max(0, min(1, 0.2*x + 0.5))", params={},
         reference="Chollet et al., Keras (software, keras.io), activations.hard_sigmoid",
         year=2015, family="hard", torch=None),
    # FINER: sin(omega0 (|x| + 1) x), omega0 = 30 as for SIREN.
    dict(name="finer", title="FINER (variable-periodic sine)", formula="sin(omega0*(abs(x) + 1)*x)",
         params={"omega0": 30.0},
         reference="Liu et al., FINER: Flexible spectral-bias tuning in implicit neural representation by "
                   "variable-periodic activation functions, CVPR",
         year=2024, family="periodic", torch=None),
    # Non-periodic activations for coordinate MLPs (Ramasinghe & Lucey); their scale parameters are tuned
    # per task, so the defaults of 1 below are illustrative.
    dict(name="gaussian_sigma", title="Gaussian exp(-x^2/(2 sigma^2)) (coordinate MLPs)",
         formula="exp(-x**2/(2*sigma**2))", params={"sigma": 1.0}, reference=BEYOND, year=2022, family="other",
         torch=None),
    dict(name="laplacian", title="Laplacian exp(-|x|/a)", formula="exp(-abs(x)/a)", params={"a": 1.0},
         reference=BEYOND, year=2022, family="other", torch=None),
    dict(name="inverse_quadratic", title="Quadratic 1/(1 + (a x)^2)", formula="1/(1 + (a*x)**2)",
         params={"a": 1.0}, reference=BEYOND, year=2022, family="other", torch=None),
    dict(name="inverse_multiquadric", title="Multi-quadratic 1/sqrt(1 + (a x)^2)", formula="1/sqrt(1 + (a*x)**2)",
         params={"a": 1.0}, reference=BEYOND, year=2022, family="other", torch=None),
    dict(name="expsin", title="ExpSin exp(-sin(a x))", formula="exp(-sin(a*x))", params={"a": 1.0},
         reference=BEYOND, year=2022, family="periodic", torch=None),
    dict(name="sinc", title="Sinc sin(x)/x", formula="sinc(x)", params={},
         reference="classical; catalogued in " + KUNC, year=2024, family="periodic", torch=None),
    dict(name="arsinh", title="ArSinh (inverse hyperbolic sine)", formula="asinh(x)", params={},
         reference="classical; catalogued in " + KUNC, year=2024, family="smooth", torch=None),
    dict(name="gudermannian", title="Gudermannian 2 atan(tanh(x/2))", formula="2*atan(tanh(x/2))", params={},
         reference="classical; catalogued in " + KUNC, year=2024, family="sigmoidal", torch=None),
    dict(name="exponential", title="Exponential exp(x)", formula="exp(x)", params={},
         reference="Chollet et al., Keras (software, keras.io), activations.exponential",
         year=2015, family="smooth", torch=None),
    dict(name="sech", title="Hyperbolic secant 1/cosh(x)", formula="1/cosh(x)", params={},
         reference="classical; catalogued in " + KUNC, year=2024, family="other", torch=None),

    # ---- Added for issue 18 (item 4, second batch): towards the survey's 400 ----------------------
    # Padé activation units at the authors' published initialisations (see PAU_COEFFICIENTS).
    *[dict(name=f"pau_{v.lower()}_{t}", title=f"PAU version {v} (5,4), {t} initialisation",
           formula=_pau_formula(v, t), params={},
           reference=PAU_PAPER + "; coefficients: the authors' rational_activations library, paus_config.json",
           year=2020, family="rational", torch=None)
      for v, t in PAU_COEFFICIENTS],

    # -- ReLU family --
    dict(name="leaky_relu_03", title="Leaky ReLU (slope 0.3, Keras LeakyReLU default)", formula="max(x, 0.3*x)",
         params={}, reference="Chollet et al., Keras (software, keras.io), layers.LeakyReLU (default alpha=0.3)",
         year=2015, family="relu", torch="leaky_relu:negative_slope=0.3"),
    # RePU with a learnable power, initialised at p = 2 (squared ReLU); "AppReLU" a relu(x)^b in the survey.
    dict(name="repu_p", title="RePU (learnable power p, init 2)", formula="relu(x)**p", params={"p": 2.0},
         reference="Li, Tang & Yu, Better approximations of high dimensional smooth functions by deep neural "
                   "networks with rectified power units, Communications in Computational Physics",
         year=2020, family="polynomial", torch=None),
    # PLU: max(a (x + c) - c, min(a (x - c) + c, x)), a = 0.1, c = 1.
    dict(name="plu", title="PLU (piecewise linear unit)", formula="max(a*(x + c) - c, min(a*(x - c) + c, x))",
         params={"a": 0.1, "c": 1.0},
         reference="Nicolae, PLU: The piecewise linear unit activation function, arXiv:1809.09534",
         year=2018, family="relu", torch=None),
    # Bounded leaky ReLU: a x for x <= 0, x on (0, b), a x + (1 - a) b for x >= b; a = 0.01, b = 1 illustrative.
    dict(name="blrelu", title="BLReLU (bounded leaky ReLU)", formula="a*x + (1 - a)*min(relu(x), b)",
         params={"a": 0.01, "b": 1.0},
         reference="Liew, Khalil-Hani & Bakhteri, Bounded activation functions for enhanced training stability of "
                   "deep neural networks on visual pattern recognition problems, Neurocomputing",
         year=2016, family="relu", torch=None),
    # LeLeLU: a x for x >= 0, 0.01 a x for x < 0, a learnable (init 1).
    dict(name="lelelu", title="LeLeLU (learnable leaky ReLU)", formula="a*(relu(x) + 0.01*min0(x))",
         params={"a": 1.0},
         reference="Maniatopoulos & Mitianoudis, Learnable Leaky ReLU (LeLeLU): An alternative accuracy-optimized "
                   "activation function, Information",
         year=2021, family="relu", torch=None),
    # SoftModulusQ: x^2 (2 - |x|) for |x| <= 1, |x| otherwise.
    dict(name="soft_modulus_q", title="SoftModulusQ (quadratic soft modulus)",
         formula="min(abs(x), 1)**2*(2 - min(abs(x), 1)) + relu(abs(x) - 1)", params={},
         reference=SOFT_MODULUS, year=2023, family="relu", torch=None),
    # SoftModulusT: x tanh(x / beta), beta = 0.01.
    dict(name="soft_modulus_t", title="SoftModulusT (tanh soft modulus)", formula="x*tanh(x/beta)",
         params={"beta": 0.01}, reference=SOFT_MODULUS, year=2023, family="relu", torch=None),
    dict(name="mrelu", title="mReLU (mirrored ReLU, triangular)", formula="min(relu(1 - x), relu(1 + x))",
         params={}, reference=_survey("mReLU"), year=2024, family="relu", torch=None),
    # ReSP: a x + log 2 for x >= 0, softplus(x) for x < 0; a = 1.5 illustrative.
    dict(name="resp", title="ReSP (rectified softplus)", formula="a*relu(x) + softplus(min0(x))",
         params={"a": 1.5}, reference=_survey("ReSP"), year=2024, family="relu", torch=None),
    dict(name="oaf", title="OAF (optimal activation function) relu(x) + x sigmoid(x)",
         formula="relu(x) + x*sigmoid(x)", params={}, reference=_survey("OAF"), year=2024, family="relu",
         torch=None),

    # -- ELU-like (identity for x >= 0, another branch below) --
    # PoLU: x for x >= 0, (1 - x)^(-a) - 1 for x < 0; a = 1 (PolyLU) is the paper's first setting.
    dict(name="polu", title="PoLU (power linear unit)", formula="relu(x) + (1 - min0(x))**(-a) - 1",
         params={"a": 1.0},
         reference="Li, Ding & Li, Training neural networks by using power linear units (PoLUs), arXiv:1802.00212",
         year=2018, family="elu", torch=None),
    # FPFLU: x for x >= 0, x + x^2/sqrt(1 + x^2) for x < 0.
    dict(name="fpflu", title="FPFLU (faster power function linear unit)",
         formula="x + min0(x)**2/sqrt(1 + min0(x)**2)", params={}, reference=PFLU_PAPER, year=2021,
         family="elu", torch=None),
    # SQLU: x for x > 0, x + x^2/4 on [-2, 0], -1 below -2.
    dict(name="sqlu", title="SQLU (square linear unit)",
         formula="relu(x) + max(min0(x), -2) + max(min0(x), -2)**2/4", params={},
         reference="Wuraola, Patel & Nguang, Efficient activation functions for embedded inference engines, "
                   "Neurocomputing",
         year=2021, family="elu", torch=None),
    dict(name="thlu", title="ThLU (tanh linear unit)", formula="relu(x) + tanh(min0(x)/2)", params={},
         reference=_survey("ThLU"), year=2024, family="elu", torch=None),
    # SaRa: x for x >= 0, x / (1 + a exp(-b x)) for x < 0, a = 0.5, b = 0.7.
    dict(name="sara", title="SaRa", formula="relu(x) + min0(x)/(1 + a*exp(-b*min0(x)))",
         params={"a": 0.5, "b": 0.7}, reference=_survey("SaRa"), year=2024, family="elu", torch=None),
    # LSELU: lam x for x >= 0, lam alpha (exp(x) - 1) + lam beta x for x < 0.
    dict(name="lselu", title="LSELU (leaky SELU)", formula="lam*(relu(x) + alpha*expm1(min0(x)) + beta*min0(x))",
         params={"lam": 1.05078, "alpha": 1.6733, "beta": 0.1}, reference=_survey("LSELU"), year=2024,
         family="elu", torch=None),
    # Symexp sign(x) (exp|x| - 1), the inverse of symlog.
    dict(name="symexp", title="Symexp sign(x)(exp|x| - 1)", formula="expm1(relu(x)) - expm1(relu(-x))",
         params={},
         reference="Hafner, Pasukonis, Ba & Lillicrap, Mastering diverse domains through world models, "
                   "arXiv:2301.04104",
         year=2023, family="smooth", torch=None),

    # -- Gated (x times a gate) and other smooth non-monotonic --
    # TanhSoft family tanh(alpha x + beta e^(gamma x)) ln(delta + e^x): the two instances in the abstract.
    dict(name="tanhsoft1", title="TanhSoft-1 tanh(alpha x) softplus(x)", formula="tanh(alpha*x)*softplus(x)",
         params={"alpha": 0.87}, reference=TANHSOFT, year=2020, family="gated", torch=None),
    dict(name="tanhsoft2", title="TanhSoft-2 x tanh(beta exp(gamma x))", formula="x*tanh(beta*exp(gamma*x))",
         params={"beta": 0.6, "gamma": 1.0}, reference=TANHSOFT, year=2020, family="gated", torch=None),
    # EIS family x softplus(x)^a / (sqrt(b + c x^2) + d exp(-e x)): the instance a = b = c = 1, d = 0.
    dict(name="eis", title="EIS x softplus(x)/sqrt(1 + x^2)", formula="x*softplus(x)/sqrt(1 + x**2)", params={},
         reference="Biswas, Kumar, Banerjee & Pandey, EIS - a family of activation functions combining "
                   "Exponential, ISRU, and Softplus, arXiv:2009.13501",
         year=2020, family="gated", torch=None),
    dict(name="self_arctan", title="Self-arctan x atan(x)", formula="x*atan(x)", params={},
         reference="Sivri, Akman & Berkol, Multiclass classification using arctangent activation function and its "
                   "variations, ECAI",
         year=2022, family="gated", torch=None),
    # Parametric Logish a x ln(1 + sigmoid(b x)), a = 1, b = 10.
    dict(name="parametric_logish", title="Parametric Logish", formula="a*x*log1p(sigmoid(b*x))",
         params={"a": 1.0, "b": 10.0},
         reference="Zhu, Zeng, Liu & Zhang, Logish: A new nonlinear nonmonotonic activation function for "
                   "convolutional neural network, Neurocomputing",
         year=2021, family="gated", torch=None),
    dict(name="sgelu", title="SGELU (symmetrical GELU) a x erf(x/sqrt 2)", formula="a*x*erf(x/sqrt(2))",
         params={"a": 1.0},
         reference="Yu & Su, Symmetrical Gaussian error linear units (SGELUs), arXiv:1911.03925",
         year=2019, family="gated", torch=None),
    dict(name="loglogish", title="LogLogish x (1 - exp(-exp(x)))", formula="x*(1 - exp(-exp(x)))", params={},
         reference=_survey("LogLogish"), year=2024, family="gated", torch=None),
    # LaLU: x times the Laplace CDF (1 - e^(-x)/2 for x >= 0, e^x/2 for x < 0).
    dict(name="lalu", title="LaLU (Laplace linear unit)",
         formula="x*(0.5*exp(min0(x)) + 0.5 - 0.5*exp(-relu(x)))", params={}, reference=_survey("LaLU"),
         year=2024, family="gated", torch=None),
    dict(name="double_silu", title="Double SiLU x sigmoid(x sigmoid(x))", formula="x*sigmoid(x*sigmoid(x))",
         params={}, reference=_survey("DoubleSiLU"), year=2024, family="gated", torch=None),
    dict(name="msilu", title="MSiLU (modified SiLU)", formula="x*sigmoid(x) + exp(-x**2 - 1)/4", params={},
         reference=_survey("MSiLU"), year=2024, family="gated", torch=None),
    dict(name="tsilu", title="TSiLU tanh(x sigmoid(x))", formula="tanh(x*sigmoid(x))", params={},
         reference=_survey("TSiLU"), year=2024, family="gated", torch=None),
    dict(name="asilu", title="ASiLU atan(x sigmoid(x))", formula="atan(x*sigmoid(x))", params={},
         reference=_survey("ASiLU"), year=2024, family="gated", torch=None),
    dict(name="swat", title="SwAT x sigmoid(atan(x))", formula="x*sigmoid(atan(x))", params={},
         reference=_survey("SwAT"), year=2024, family="gated", torch=None),
    dict(name="tsrelu", title="TSReLU x tanh(sigmoid(x))", formula="x*tanh(sigmoid(x))", params={},
         reference=_survey("TSReLU"), year=2024, family="gated", torch=None),
    # TBSReLU: x tanh((1 - e^-x)/(1 + e^-x)) = x tanh(tanh(x/2)).
    dict(name="tbsrelu", title="TBSReLU x tanh(bipolar sigmoid(x))", formula="x*tanh(tanh(x/2))", params={},
         reference=_survey("TBSReLU"), year=2024, family="gated", torch=None),
    dict(name="resech", title="Rectified hyperbolic secant x sech(x)", formula="x/cosh(x)", params={},
         reference=_survey("Rectified hyperbolic secant"), year=2024, family="gated", torch=None),
    # EANAF: x e^x/(e^x + 2) = x tanh(softplus(x)/2) = x sigmoid(x - ln 2).
    dict(name="eanaf", title="EANAF x e^x/(e^x + 2)", formula="x*sigmoid(x - log(2))", params={},
         reference="Chai, Yu, Cui, Ren & Ding, An efficient asymmetric nonlinear activation function for deep "
                   "neural networks, Symmetry",
         year=2022, family="gated", torch=None),
    dict(name="sinsig", title="SinSig x sin(pi/2 sigmoid(x))", formula="x*sin(pi/2*sigmoid(x))", params={},
         reference=_survey("SinSig"), year=2024, family="gated", torch=None),
    dict(name="tanh_sig", title="TanhSig (x + tanh(x)) sigmoid(x)", formula="(x + tanh(x))*sigmoid(x)",
         params={}, reference=_survey("TanhSig"), year=2024, family="gated", torch=None),
    dict(name="sech_sig", title="SechSig (x + sech(x)) sigmoid(x)", formula="(x + 1/cosh(x))*sigmoid(x)",
         params={}, reference=_survey("SechSig"), year=2024, family="gated", torch=None),
    dict(name="generalized_swish", title="Generalized swish x sigmoid(exp(-x))", formula="x*sigmoid(exp(-x))",
         params={}, reference=_survey("Generalized swish"), year=2024, family="gated", torch=None),

    # -- Sigmoidal / bounded --
    dict(name="sigmoid_derivative", title="Sigmoid derivative sigmoid(x)(1 - sigmoid(x))",
         formula="sigmoid(x)*(1 - sigmoid(x))", params={}, reference="classical; catalogued in " + KUNC,
         year=2024, family="other", torch=None),
    dict(name="sigmoid_gumbel", title="Sigmoid-Gumbel sigmoid(x) exp(-exp(-x))", formula="sigmoid(x)*exp(-exp(-x))",
         params={}, reference=_survey("Sigmoid-Gumbel"), year=2024, family="sigmoidal", torch=None),
    # Aranda-Ordaz link 1 - (1 + lam e^x)^(-1/lam); lam = 2 as in Gomes et al.
    dict(name="aranda_ordaz", title="Aranda-Ordaz 1 - (1 + lam e^x)^(-1/lam)",
         formula="1 - (1 + lam*exp(x))**(-1/lam)", params={"lam": 2.0},
         reference=GOMES + " (after Aranda-Ordaz, On two families of transformations to additivity for binary "
                           "response data, Biometrika)",
         year=2011, family="sigmoidal", torch=None),
    dict(name="new_sigmoid", title="New sigmoid (e^x - e^-x)/sqrt(2(e^2x + e^-2x))",
         formula="(exp(x) - exp(-x))/sqrt(2*(exp(2*x) + exp(-2*x)))", params={}, reference=_survey("New sigmoid"),
         year=2024, family="sigmoidal", torch=None),
    dict(name="mishra", title="Mishra softsign(x)^2/2 + softsign(x)/2", formula="softsign(x)**2/2 + softsign(x)/2",
         params={}, reference=_survey("Mishra"), year=2024, family="sigmoidal", torch=None),
    # Smooth step: 0 below -a/2, 1 above a/2, -2x^3/a^3 + 3x/(2a) + 1/2 between; a = 2 illustrative.
    dict(name="smooth_step", title="Smooth step (cubic)",
         formula="-2*min(max(x, -a/2), a/2)**3/a**3 + 3*min(max(x, -a/2), a/2)/(2*a) + 1/2",
         params={"a": 2.0},
         reference="Hazimeh, Ponomareva, Mol, Tan & Mazumder, The tree ensemble layer: Differentiability meets "
                   "conditional computation, ICML",
         year=2020, family="sigmoidal", torch=None),
    # LeCun's "small linear term" added to a sigmoid to avoid flat spots: tanh(x) + a x; a = 0.1 illustrative.
    dict(name="tanh_linear", title="Twisted tanh tanh(x) + a x", formula="tanh(x) + a*x", params={"a": 0.1},
         reference=EFFICIENT_BACKPROP, year=1998, family="sigmoidal", torch=None),

    # -- Smooth unbounded / other --
    # Soft++: ln(1 + e^(k x)) + x/c - ln 2, k = 1, c = 2.
    dict(name="soft_plus_plus", title="Soft++", formula="softplus(k*x) + x/c - log(2)", params={"k": 1.0, "c": 2.0},
         reference="Ciuparu, Nagy-Dăbâcan & Mureşan, Soft++, a multi-parametric non-saturating non-linearity that "
                   "improves convergence in deep neural architectures, Neurocomputing",
         year=2020, family="smooth", torch=None),
    dict(name="comb_hsine", title="CombHsine sinh(a x) + asinh(a x)", formula="sinh(a*x) + asinh(a*x)",
         params={"a": 1.0}, reference=_survey("CombHsine"), year=2024, family="smooth", torch=None),
    dict(name="hypersinh", title="HyperSinh sinh(x)/3 for x > 0, x^3/4 otherwise",
         formula="sinh(relu(x))/3 + min0(x)**3/4", params={},
         reference="Parisi, Ma, RaviChandran & Lanzillotta, hyper-sinh: An accurate and reliable function from "
                   "shallow to deep learning in TensorFlow and Keras, Machine Learning with Applications",
         year=2021, family="smooth", torch=None),
    dict(name="etanh", title="Etanh a e^x tanh(x)", formula="a*exp(x)*tanh(x)", params={"a": 1.0},
         reference=_survey("Etanh"), year=2024, family="smooth", torch=None),
    # Bi-firing: x^2/(2a) for |x| <= a, |x| - a/2 outside (a smoothed |x|).
    dict(name="bifiring", title="Bi-firing (smoothed |x|)", formula="min(abs(x), a)**2/(2*a) + relu(abs(x) - a)",
         params={"a": 1.0}, reference=_survey("Bi-firing"), year=2024, family="other", torch=None),
    # SQ-RBF: 1 - x^2/2 for |x| <= 1, (2 - |x|)^2/2 for 1 < |x| < 2, 0 beyond.
    dict(name="sq_rbf", title="SQ-RBF (square radial basis)",
         formula="(2 - min(abs(x), 2))**2/2 - (1 - min(abs(x), 1))**2", params={}, reference=_survey("SQ-RBF"),
         year=2024, family="other", torch=None),
    dict(name="polyexp", title="Polyexp (a x^2 + b x + c) exp(-d x^2)", formula="(a*x**2 + b*x + c)*exp(-d*x**2)",
         params={"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0}, reference=_survey("Polyexp"), year=2024, family="other",
         torch=None),
    dict(name="wave", title="Wave (1 - x^2) exp(-a x^2)", formula="(1 - x**2)*exp(-a*x**2)", params={"a": 1.0},
         reference=_survey("Wave"), year=2024, family="other", torch=None),
    dict(name="asu", title="ASU (amplifying sine unit) x sin(x)", formula="x*sin(x)", params={},
         reference="Rahman, Makhdoom & Lu, Amplifying sine unit: An oscillatory activation function for deep neural "
                   "networks to recover nonlinear oscillations efficiently, arXiv:2304.09759",
         year=2023, family="periodic", torch=None),
]
