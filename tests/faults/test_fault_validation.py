"""Validation before any work (issue #17): every bad setting, unknown parameter and broken head makes
`validate` and `run` exit 2 with a message naming the file and the key (or the model and the contract point),
and `run` creates no run directory. `validate --data` loads the data the way `run` does first."""
from __future__ import annotations

from pathlib import Path

import pytest
from faultkit import LimitedCli, cli, run_args

from benchmark.cli import main
from benchmark.training.checks import checked

HERE = Path(__file__).parent

# setting(s) given with --set -> phrases the message must hold
SETTINGS = {
    "misspelt head parameter": (["models.0.params.widht=64"],
                                ["`models[0].params.widht` is not a parameter of head 'mse'.", "Did you mean 'width'?"]),
    "timm model that does not exist": (["encoder.name=timm", 'encoder.params={model = "resnet1800"}'],
                                       ["`encoder.params.model`: timm has no model 'resnet1800'.",
                                        "Did you mean 'resnet18'?"]),
    "timm weights to download": (["encoder.name=timm", "encoder.params={timm_args = {pretrained = true}}"],
                                 ["`encoder.params.timm_args`: pretrained: nothing is downloaded; give a local "
                                  "checkpoint as encoder.weights"]),
    "fold the protocol does not read": (["dataset.fold=3", 'dataset.protocol="fold0"'],
                                        ["`dataset.fold` = 3, but dataset 'echonet_pediatric' reads it in only 'fold' "
                                         "of its protocols, and `dataset.protocol` is 'fold0', so it would be ignored"]),
    "fold of a dataset without folds": (["dataset.name=echonet_dynamic", "dataset.fold=3"],
                                        ["`dataset.fold` = 3, but dataset 'echonet_dynamic' reads it in none of its "
                                         "protocols, and `dataset.protocol` is 'official', so it would be ignored"]),
    "pooling that does not exist": (["encoder.name=timm", 'encoder.params={pooling = "max"}'],
                                    ["`encoder.params.pooling` must be one of 'mean', 'attention', got 'max'"]),
    "unknown encoder parameter": (["encoder.params.widht=4"],
                                  ["`encoder.params.widht` is not a parameter of encoder 'tiny3d'.",
                                   "Did you mean 'width'?"]),
    "unknown search_space key": (['models.0.search_space={lrr = {float = [1e-4, 1e-2]}}'],
                                 ["`models[0].search_space.lrr` is neither a trainer setting", "Did you mean 'lr'?"]),
    "unknown fusion key in search_space": (['models.0.search_space={"fusion.embed" = {choices = [8, 16]}}'],
                                           ["`models[0].search_space.fusion.embed`", "Did you mean 'fusion.embed_dim'?"]),
    "learning rate NaN": (["train.lr=nan"], ["`train.lr` must be a finite number, got nan"]),
    "negative stage-1 epochs": (["encoder.pretrain.epochs=-1"], ["`encoder.pretrain.epochs` must be 0 (no stage 1)"]),
    "negative seed": (["seeds=[-1]"], ["`seeds` must be between 0 and 4294967295"]),
    "negative threads": (["train.threads=-1"], ["`train.threads` must be 0 (torch's default)"]),
    "negative bootstrap": (["evaluate.bootstrap=-5"], ["`evaluate.bootstrap` must be at least 1"]),
    "samples beyond memory": (["evaluate.samples=100000000"],
                              ["`evaluate.samples` must be at most 10000", "800 GB a copy"]),
    "fold out of range": (["dataset.fold=11"], ["`dataset.fold` must be between 0 and 9 (the test fold of a ten-fold protocol), got 11"]),
    "wrong type of head parameter": (["models.0.params.width=\"wide\""],
                                     ["`models[0].params.width` must be an integer, got 'wide'"]),
    "engine-set parameter": (["models.0.params.condition_dim=3"],
                             ["`models[0].params.condition_dim`: condition_dim is set by the benchmark"]),
    "synthetic.params shadowing synthetic.n": (["synthetic.params={n = 5}"],
                                               ["`synthetic.params.n` would override `synthetic.n`"]),
    "synthetic.params shadowing dataset.name": (['synthetic.params={format = "camus"}'],
                                                ["`synthetic.params.format` would override `dataset.name`"]),
    "misspelt synthetic parameter": (["synthetic.params={sise = 48}"],
                                     ["`synthetic.params.sise` is not a parameter of dataset 'synthetic'.",
                                      "Did you mean 'size'?"]),
    "synthetic size the generator refuses": (["synthetic.params={size = 0}"],
                                             ["`synthetic.params.size`: must be at least 32 and at most 1024 pixels",
                                              "got 0"]),
    "search-space lr the trainer refuses": (["models.0.search_space={lr = {float = [-1, -0.1]}}"],
                                            ["`models[0].search_space.lr` can give -1.0, but like `train.lr` it "
                                             "must be positive."]),
    "search-space batch size of 0": (["models.0.search_space={batch_size = {int = [0, 0]}}"],
                                     ["`models[0].search_space.batch_size` can give 0, but like `train.batch_size` "
                                      "it must be at least 1."]),
    "float range for an int head parameter": (["models.0.search_space={width = {float = [32, 64]}}"],
                                              ["`models[0].search_space.width` can give 32.0, but it must be an "
                                               "integer."]),
    "search-space choice the head refuses": (['models.0.search_space={activation = {choices = ["gelu", "bogus"]}}',
                                              "tune.trials=2"],
                                             ["`models[0].search_space.activation` can give 'bogus', with which model "
                                              "'mse' (head 'mse', fusion 'concat') fails the pre-flight",
                                              "unknown activation 'bogus'"]),
    "search-space depth below the head's minimum": (["models.0.search_space={depth = {int = [0, 4]}}"],
                                                    [("`models[0].search_space.depth` can give 0: must be between 1 "
                                                      "and 16, got 0")]),
    "log-scaled int range from 0": (["models.0.search_space={depth = {int = [0, 4], log = true}}"],
                                    ["`models[0].search_space.depth`: a log-scaled IntParam needs low >= 1, got 0"]),
    "choices as a string": (['models.0.search_space={activation = {choices = "gelu"}}'],
                            ["`models[0].search_space.activation`: choices must be a list, got 'gelu'"]),
    "misspelt key in an open head's search space": (["models.0.head=ensemble",
                                                     "models.0.search_space={widht = {choices = [8]}}", "tune.trials=2"],
                                                    ["`models[0].search_space.widht` can give 8, with which model",
                                                     "unexpected keyword argument 'widht'"]),
    "misspelt oracle information": (["models.1.head=oracle", "models.1.fusion=none",
                                     'models.1.params={information = "visoin"}'],
                                    ["`models[1].params.information`: model 'gaussian' (head 'oracle', fusion 'none') "
                                     "fails the pre-flight at building the head", "Did you mean 'vision'?"]),
    "engine-set oracle path": (['models.1.head=oracle', 'models.1.fusion=none',
                                'models.1.params={oracle_path = "/etc/hostname"}'],
                               ["`models[1].params.oracle_path`: oracle_path is set by the benchmark"]),
    "engine-set prior EF": (['models.1.head=prior', 'models.1.label=floor', 'models.1.fusion=none',
                             'models.1.params={training_ef = 1}'],
                            ["`models[1].params.training_ef`: training_ef is set by the benchmark"]),
    "head value refused by the pre-flight": (["models.1.params={dropout = 1.5}"],
                                             ["`models[1].params.dropout`: model 'gaussian' (head 'gaussian', fusion "
                                              "'concat') fails the pre-flight at building the fusion and head"]),
    "encoder width the encoder refuses": (["encoder.params.width=0"],
                                          ["`encoder.params.width`: must be between 1 and 2048, got 0"]),
    "encoder weights that do not exist": (['encoder.weights="nope.pt"'],
                                          ["`encoder.weights` = 'nope.pt': there is no file"]),
    "device that is no device": (['train.device="gpu"'], ["`train.device` = 'gpu' is not a device"]),
    "empty device": (['train.device=""'], ["`train.device` = '' is not a device"]),
    "CUDA device this machine lacks": (['train.device="cuda:99"'], ["`train.device` = 'cuda:99' but "]),
    "storage with an unknown scheme": (['tune.storage="postgersql://bar"'],
                                       ["`tune.storage` = 'postgersql://bar': 'postgersql' is not a database URL "
                                        "scheme. Did you mean 'postgresql'?"]),
    "storage that does not answer": (['tune.storage="postgresql://user:secret@127.0.0.1:9/db"'],
                                     ["`tune.storage` = 'postgresql://user:***@127.0.0.1:9/db'"]),
    "encoder size overriding clips.size": (["encoder.params.size=64"],
                                           ["`encoder.params.size` would override `clips.size`, which encoder 'tiny3d' "
                                            "takes"]),
    "dataset view overriding dataset.view": (['dataset.params={view = "PSAX"}'],
                                             ["`dataset.params.view` would override `dataset.view`; set "
                                              "`dataset.view` instead."]),
    "misspelt tuning metric while tuning is off": (['tune.metric="crpss"'],
                                                   ["`tune.metric`: unknown metric 'crpss'", "Did you mean 'crps'?"]),
    "tuning metric that is not ranked": (['tune.metric="width90"'], ["`tune.metric`: 'width90' is not ranked"]),
    "tabular fusion without tabular columns": (["dataset.tabular=[]"],
                                               ["`models[0].fusion`: 'concat' combines tabular attributes, but "
                                                "`dataset.tabular = []` gives none."]),
    "stand-in folder that cannot be made": (['synthetic.root="/proc/nope"'],
                                           ["`synthetic.root`: nothing can be created in /proc"]),
    "video cache folder that cannot be made": (['dataset.params={video_cache = "/proc/nope/x.json"}'],
                                               ["`dataset.params.video_cache`: nothing can be created in /proc"]),
    "storage folder that cannot be made": (['tune.storage="/proc/nope/x.db"'],
                                           ["`tune.storage` = '/proc/nope/x.db': nothing can be created in /proc"]),
    "misspelt mcsdr sampler beside its steps": (["models.1.head=mcsdr", 'models.1.params={sampler = "ddimm", steps = 5}'],
                                                ["`models[1].params.sampler` must be one of 'ddim', 'ddpm', got "
                                                 "'ddimm'. Did you mean 'ddim'?"]),
    "misspelt mcsdr predictor": (["models.1.head=mcsdr", 'models.1.params={predictor = "mpl"}'],
                                 ["`models[1].params.predictor` must be one of 'legacy_attention', 'deep_attention', "
                                  "'mlp', got 'mpl'. Did you mean 'mlp'?"]),
    "misspelt mcsdr schedule": (["models.1.head=mcsdr", 'models.1.params={schedule = "cosin"}'],
                                ["`models[1].params.schedule` must be one of 'linear', 'cosine', got 'cosin'. Did you "
                                 "mean 'cosine'?"]),
    "misspelt card sampler": (["models.1.head=card", 'models.1.params={sampler = "ddmp"}'],
                              ["`models[1].params.sampler` must be one of 'ddim', 'ddpm', got 'ddmp'. Did you mean "
                               "'ddpm'?"]),
    "DDIM eta outside [0, 1]": (["models.1.head=mcsdr", "models.1.params={eta = 5.0}"],
                                ["`models[1].params.eta`: model 'gaussian' (head 'mcsdr', fusion 'concat') fails the "
                                 "pre-flight at building the fusion and head: ValueError: mcsdr: eta must be between 0 "
                                 "and 1, got 5.0"]),
    "protocol the dataset lacks": (["dataset.protocol=flod"],
                                   ["`dataset.protocol`: dataset 'echonet_pediatric' has no protocol 'flod'.",
                                    "Did you mean 'fold'?"]),
    # each of these was accepted by validate and stopped the run only at the data or later, or not at all
    "view the dataset lacks": (['dataset.view="A2C"'],
                               [("`dataset.view`: dataset 'echonet_pediatric' has no view 'A2C'. Did you mean 'A4C'? "
                                 "Its views: A4C, PSAX, both.")]),
    "view other than Dynamic's A4C": (["dataset.name=echonet_dynamic", 'dataset.view="both"', "models.0.fusion=none",
                                       "models.1.fusion=none"],
                                      ["`dataset.view`: dataset 'echonet_dynamic' has no view 'both'.",
                                       "Its views: A4C."]),
    "negative min_traced_frames": (["dataset.params={min_traced_frames = -1}"],
                                   [("`dataset.params.min_traced_frames`: must be 0 (keep untraced videos) or a count "
                                     "of traced frames, got -1")]),
    "negative min_traced_frames of the stand-in's loader": (["synthetic.params={min_traced_frames = -1}"],
                                                            ["`synthetic.params.min_traced_frames`: must be 0"]),
    "CAMUS release that does not exist": (["dataset.name=camus", 'dataset.params={release = "2020"}'],
                                          ['`dataset.params.release`: must be "auto", "2019" or "2023",',
                                           "got '2020'."]),
    "dataset the stand-in has no format for": (["dataset.name=synthetic", "dataset.protocol=fold"],
                                               ["`dataset.root` = ",
                                                ("does not exist, and the synthetic stand-in that "
                                                 "`dataset.synthetic_if_missing` would use instead has no 'synthetic' "
                                                 "format (it writes echonet_dynamic, echonet_pediatric, camus)")]),
    "fusion embedding of width 0": (["models.0.fusion_params={embed_dim = 0}"],
                                    ["`models[0].fusion_params.embed_dim`: must be between 1 and 2048, got 0"]),
    "cross-attention without heads": (["models.0.fusion=cross_attention", "models.0.fusion_params={heads = 0}"],
                                      ["`models[0].fusion_params.heads`: must be between 1 and 256, got 0"]),
    "stand-in rendered by no process": (["synthetic.params={workers = 0}"],
                                        [("`synthetic.params.workers`: must be at least 1 (1 = rendered in the "
                                          "calling process), got 0")]),
    "stand-in rendered by a million processes": (["synthetic.params={workers = 1000000}"],
                                                 [("`synthetic.params.workers`: must be at most 1024: each is a "
                                                   "process, all started at once; got 1000000")]),
    "tuning a point head on NLL": (["tune.trials=2", 'tune.metric="nll"'],
                                   [("`tune.metric`: 'nll' is NaN for model `models[0]` (mse): the metric needs "
                                     "'log_prob', which head 'mse' does not declare, so every trial would fail.")]),
    "tuning a point head on NLL (KDE)": (["tune.trials=2", 'tune.metric="NLL (KDE)"'],
                                         [("`tune.metric`: 'nll_kde' is NaN for model `models[0]` (mse): the metric "
                                           "needs 'probabilistic', which head 'mse' does not declare")]),
    "tuning a sample-only head on NLL": (["tune.trials=2", 'tune.metric="nll"', "models.0.head=quantile"],
                                         [("`tune.metric`: 'nll' is NaN for model `models[0]` (mse): the metric needs "
                                           "'log_prob', which head 'quantile' does not declare")]),
    "storage that is a folder": ([f'tune.storage="{HERE}"'],
                                 [f"`tune.storage` = '{HERE}': is a folder; name a file in it,",
                                  f"e.g. {HERE / 'optuna.db'}"]),
    "storage URL of a file that is no database": ([f'tune.storage="sqlite:///{HERE / "faultkit.py"}"'],
                                                  [f"`tune.storage` = 'sqlite:///{HERE / 'faultkit.py'}':",
                                                   f"{HERE / 'faultkit.py'} holds something other than an SQLite",
                                                   "database; name a new file"]),
    "video cache that is a folder": ([f'dataset.params={{video_cache = "{HERE}"}}'],
                                     [("`dataset.params.video_cache`: is a folder; name a file in it, e.g. "
                                       f"{HERE / 'video_checks.json'}")]),
    "stand-in's video cache that is a folder": ([f'synthetic.params={{video_cache = "{HERE}"}}'],
                                                ["`synthetic.params.video_cache`: is a folder"]),
    # checked against the columns the dataset declares (its tabular_columns), not first at the loaded data
    "tabular column the dataset lacks": (['dataset.tabular=["Sex", "Wieght"]'],
                                         [("`dataset.tabular`: echonet_pediatric has no tabular column 'Wieght'; "
                                           "Did you mean 'Weight'? available: Sex, Age, Weight, Height, BMI, BSA")]),
    "derived tabular column without its inputs": (["dataset.name=camus", 'dataset.tabular=["Age", "BMI"]'],
                                                  [("`dataset.tabular`: camus has no tabular column 'BMI'; available: "
                                                    "Sex, Age")]),
    "tabular column of a dataset without any": (["dataset.name=echonet_dynamic", 'dataset.tabular=["Age"]',
                                                 "models.0.fusion=none", "models.1.fusion=none"],
                                                [("`dataset.tabular`: echonet_dynamic has no tabular column 'Age'; "
                                                  "available: none")]),
    # the stand-in writes CAMUS in the 2023 layout: told to read 2019, its loader found nothing after generating it
    "CAMUS release the stand-in does not write": (["dataset.name=camus", 'dataset.params={release = "2019"}'],
                                                  [("`dataset.params.release`: the synthetic stand-in writes camus as "
                                                    "release '2023' only, so '2019' would find none of its files; use "
                                                    "'auto' or '2023', or point dataset.root at real camus data")]),
    "CAMUS release the stand-in does not write, in synthetic.params": (
        ["dataset.name=camus", 'synthetic.params={size = 32, workers = 1, release = "2019"}'],
        ["`synthetic.params.release`: the synthetic stand-in writes camus as release '2023' only"]),
    # the stand-in writes Pediatric's A4C folder only: PSAX or both stopped the run after generating, telling the
    # user to point dataset.root at the folder they downloaded
    "Pediatric view the stand-in does not write": (['dataset.view="both"'],
                                                   [("`dataset.view`: the synthetic stand-in writes echonet_pediatric as "
                                                     "view 'A4C' only, so 'both' would find none of its files")]),
    "label-derived tabular column": (["dataset.name=echonet_dynamic", 'dataset.tabular=["ESV"]', "models.0.fusion=none",
                                      "models.1.fusion=none"],
                                     ["`dataset.tabular`: 'ESV' is derived from the EF label"]),
    # accepted by validate: each stopped or bent the run only after the data were generated, or at stage 1
    "stand-in video cache that is no string": (["synthetic.params={video_cache = [1.0]}"],
                                               ["`synthetic.params.video_cache` must be a string, got [1.0]."]),
    "threads beyond what torch takes": (["train.threads=2147483648"],
                                        ["`train.threads` must be at most 1024: each is an OS thread"]),
    "decoding processes by the thousand": (["train.num_workers=100000"],
                                           ["`train.num_workers` must be at most 1024: each is a decoding process"]),
    "empty dataset root": (['dataset.root=""'],
                           ["`dataset.root` must name the dataset's folder (\"\" would be the current directory)"]),
    "empty stand-in root": (['synthetic.root=""'],
                            ["`synthetic.root` must name a folder for the generated stand-ins"]),
    "UniFormer stochastic depth of 1": (["encoder.name=uniformer_s", "encoder.params={drop_path = 1.0}"],
                                        [("`encoder.params.drop_path`: encoder 'uniformer_s' fails the pre-flight at "
                                          "building it: ValueError: uniformer_s: drop_path must be at least 0 and "
                                          "below 1, got 1.0")]),
    "synthetic size of gigabytes a frame": (["synthetic.params={size = 100000}"],
                                            ["`synthetic.params.size`: must be at least 32 and at most 1024 pixels "
                                             "(clips are at most 512), got 100000"]),
    "search-space log that is no boolean": (['models.0.search_space={lr = {float = [1e-4, 1e-2], log = "false"}}'],
                                            ["`models[0].search_space.lr`: log must be true or false, got 'false'"]),
    "run named '.'": (['name="."'], ["`name` '.' is '.', the folder it would be made in"]),
    "a million training processes": (["train.workers=1000000"], ["`train.workers` must be at most 1024"]),
    "a million encoder-stage processes": (["encoder.workers=1000000"], ["`encoder.workers` must be at most 1024"]),
    "clip stride past any video": (["clips.frequency=100000"],
                                   ["`clips.frequency` must be at most 256 frames: a longer stride keeps one frame"]),
    "clip window past the video": (["clips.train_window=[0.5, 1.5]"],
                                   ["`clips.train_window` must be [low, high] with 0 < low <= high <= 1"]),
    "empty test window": (["clips.test_window=0"], ["`clips.test_window` must be above 0 and at most 1"]),
    "clip window in echonet mode": (['clips.mode="echonet"', "clips.test_window=1.0"],
                                    ['`clips.test_window` applies to mode "mcsdr"']),
    "in-memory tuning storage": (['tune.storage="sqlite://"'],
                                 ["`tune.storage` = 'sqlite://': an in-memory database lives as long as one process"]),
    # accepted by validate: each stopped the run with an OverflowError or ValueError of Python's after stage 1 and
    # the features (a batch size past what itertools.islice and torch take), or at tuning (tqdm's len of the epochs)
    "training batch past a machine integer": ([f"train.batch_size={10**26}"],
                                              [("`train.batch_size` must be at most 9223372036854775807 (what a "
                                                f"machine integer holds), got {10**26}")]),
    "feature batch past a machine integer": ([f"encoder.batch_size={10**26}"],
                                             ["`encoder.batch_size` must be at most 9223372036854775807"]),
    "stage-1 batch past a machine integer": ([f"encoder.pretrain.batch_size={10**26}"],
                                             ["`encoder.pretrain.batch_size` must be at most 9223372036854775807"]),
    "tuning epochs past a machine integer": (["tune.trials=1", f"tune.epochs={10**26}"],
                                             ["`tune.epochs` must be at most 9223372036854775807"]),
    # accepted by validate: the clip sampler refused it once the data were loaded, in the run directory, unnamed
    "several test clips in mcsdr mode": (["clips.test_clips=3"],
                                         ['`clips.test_clips` applies to mode "echonet"; mode "mcsdr" tests one clip']),
    # accepted by validate: the run generated the stand-in, whose two traced frames a video then excluded every one
    "more traced frames than the stand-in traces": (["synthetic.params={min_traced_frames = 3}"],
                                                    [("`synthetic.params.min_traced_frames`: the synthetic stand-in "
                                                      "traces 2 frames of each video (ED and ES), so 3 would exclude "
                                                      "every one")]),
    # accepted, and mixed precision silently off: it is CUDA's only
    "mixed precision on the CPU": (['train.device="cpu"', "train.amp=true"],
                                   ['`train.amp` is mixed precision on CUDA, and `train.device` = "cpu"']),
    # accepted, the first of the kinds taken and the rest dropped unsaid; a string read as a number
    "search-space entry of two kinds": (["models.0.search_space={lr = {float = [1e-4, 1e-2], choices = [1e-3]}}"],
                                        [("`models[0].search_space.lr`: an entry is one of float, int or choices, "
                                          "got float and choices")]),
    "log-scaled choices": (["models.0.search_space={width = {choices = [8, 16], log = true}}"],
                           ["`models[0].search_space.width`: log scales a float or int range; choices have none"]),
    "float range of strings": (['models.0.search_space={lr = {float = ["1e-4", "1e-2"]}}'],
                               [("`models[0].search_space.lr`: a float range needs numbers at its ends, got "
                                 "['1e-4', '1e-2']")]),
}

# Sizes a model is built from, each refused by its component's parameter_problems before the pre-flight builds
# anything: unchecked, validate built a billion layers for 25 minutes until the kernel killed it. Run in a child
# under a memory limit (cli_limited), so that if the check is lost the row fails in seconds.
G = 10**9  # the size of every row below: what the reviewer's experiment gave `depth`
SIZES = {
    "trunk depth of a billion": ([f"models.0.params.depth={G}"],
                                 [f"`models[0].params.depth`: must be between 1 and 16, got {G}"]),
    "trunk width of a billion": ([f"models.1.params.width={G}"],
                                 [f"`models[1].params.width`: must be between 1 and 2048, got {G}"]),
    "CARD depth of a billion": (["models.0.head=card", f"models.0.params.depth={G}"],
                                [f"`models[0].params.depth`: must be between 1 and 16, got {G}"]),
    "CARD timesteps by the billion": (["models.0.head=card", f"models.0.params.timesteps={G}"],
                                      [f"`models[0].params.timesteps`: must be between 1 and 1000, got {G}"]),
    "MCSDR attention layers by the billion": (["models.0.head=mcsdr",
                                               f'models.0.params={{predictor = "deep_attention", layers = {G}}}'],
                                              [f"`models[0].params.layers`: must be between 1 and 24, got {G}"]),
    "MCSDR width of a billion": (["models.0.head=mcsdr", f"models.0.params.width={G}"],
                                 [f"`models[0].params.width`: must be between 1 and 2048, got {G}"]),
    "MCSDR timesteps by the billion": (["models.0.head=mcsdr", f"models.0.params.timesteps={G}"],
                                       [f"`models[0].params.timesteps`: must be between 1 and 10000, got {G}"]),
    "MCSDR time embedding of a billion": (["models.0.head=mcsdr", f"models.0.params.time_dim={G}"],
                                          [f"`models[0].params.time_dim`: must be between 4 and 2048, got {G}"]),
    "MCSDR condition tokens by the billion": (["models.0.head=mcsdr",
                                               f'models.0.params={{predictor = "deep_attention", tokens = {G}}}'],
                                              [f"`models[0].params.tokens`: must be between 1 and 64, got {G}"]),
    "ensemble of a billion members": (["models.0.head=ensemble", f"models.0.params.members={G}"],
                                      [f"`models[0].params.members`: must be between 1 and 32, got {G}"]),
    "ensemble members a billion wide": (["models.0.head=ensemble", f"models.0.params.width={G}"],
                                        [f"`models[0].params.width`: must be between 1 and 2048, got {G}"]),
    "mixture of a billion components": (["models.0.head=mdn", f"models.0.params.components={G}"],
                                        [f"`models[0].params.components`: must be between 1 and 100, got {G}"]),
    "a billion quantile levels": (["models.0.head=quantile", f"models.0.params.levels={G}"],
                                  [f"`models[0].params.levels`: must be between 2 and 999, got {G}"]),
    "tabular embedding of a billion": ([f"models.0.fusion_params={{embed_dim = {G}}}"],
                                       [f"`models[0].fusion_params.embed_dim`: must be between 1 and 2048, got {G}"]),
    "a billion attention heads over the tabular tokens": (
        ["models.0.fusion=cross_attention", f"models.0.fusion_params={{heads = {G}}}"],
        [f"`models[0].fusion_params.heads`: must be between 1 and 256, got {G}"]),
    "tiny3d depth of a billion": ([f"encoder.params.depth={G}"],
                                  [f"`encoder.params.depth`: must be between 1 and 10, got {G}"]),
    "tiny3d width of a billion": ([f"encoder.params.width={G}"],
                                  [f"`encoder.params.width`: must be between 1 and 2048, got {G}"]),
    "tiny3d last stage wider than ResNet-50's": (["encoder.params={width = 64, depth = 10}"],
                                                 [("`encoder.params.depth`: width 64 doubled over 10 stages gives "
                                                   "32768 channels in the last; at most 2048")]),
    "frame_pool depth of a billion": (['encoder.name="frame_pool"', f"encoder.params={{depth = {G}}}"],
                                      [f"`encoder.params.depth`: must be between 1 and 10, got {G}"]),
    "frame_pool descriptors by the billion": (['encoder.name="frame_pool"', f"encoder.params={{descriptors = {G}}}"],
                                              [f"`encoder.params.descriptors`: must be between 1 and 1024, got {G}"]),
    "area_length width of a billion": (['encoder.name="area_length"', f"encoder.params={{width = {G}}}"],
                                       [f"`encoder.params.width`: must be between 1 and 512, got {G}"]),
    "timm depth of a billion": (["encoder.name=timm", f'encoder.params={{timm_args = {{depth = {G}}}}}'],
                                [f"`encoder.params.timm_args`: depth = {G}: every whole number here must be between 0 "
                                 "and 4096"]),
    "search-space depth up to a billion": (
        [f"models.0.search_space={{depth = {{int = [1, {G}]}}}}"],
        [f"`models[0].search_space.depth` can give {G}: must be between 1 and 16, got {G}"]),
    "search-space embedding of a billion": (
        [f'models.0.search_space={{"fusion.embed_dim" = {{choices = [64, {G}]}}}}'],
        [f"`models[0].search_space.fusion.embed_dim` can give {G}: must be between 1 and 2048, got {G}"]),
}


# Sizes each inside its range that together pass what this machine can give a pre-flight (benchmark.encoding.budget):
# half of what the memory limit of cli_limited leaves, and 1e11 floating-point operations of sampling. Unchecked,
# tiny3d asked 137 GB for one clip, the ensemble built 8 GB of parameters, the sampler ran for minutes and ViT-giant
# built 4 GB; each is refused before it is built or sampled for real (tiny3d by the address-space limit of its real
# pre-flight, at the allocation that would pass it), so a lost check fails the row at the limit or the timeout.
BUDGETS = {
    "tiny3d 2048 wide on 512-px, 256-frame clips": (
        ["encoder.params={width = 2048, depth = 1}", "clips.size=512", "clips.frames=256"],
        ["`encoder.params", "encoder 'tiny3d' fails the pre-flight at forward(one clip): an allocation of",
         "would take it past the", "a pre-flight may take here"]),
    "an ensemble of 32 members, each 2048 wide and 16 deep": (
        ["models.0.head=ensemble", "models.0.params={members = 32, width = 2048, depth = 16}"],
        ["fails the pre-flight at its budget: built on the meta device (nothing allocated), it takes",
         "a pre-flight may take here"]),
    "DDPM sampling through 10000 timesteps of a 2048-wide network": (
        ["models.0.head=mcsdr", 'models.0.params={sampler = "ddpm", timesteps = 10000, width = 2048}'],
        ["`models[0].params.sampler`: model 'mse' (head 'mcsdr', fusion 'concat') fails the pre-flight at its budget: "
         "sample(condition, 5) runs its network 10000 time(s) on 3 x 5 rows: 1.5e+13 floating-point operations, over "
         "the 1e+11 a pre-flight may compute"]),
    "timm's ViT-giant": (
        ["encoder.name=timm", 'encoder.params={model = "vit_giant_patch14_224"}'],
        ["`encoder.params.model`: encoder 'timm' fails the pre-flight at its budget: built on the meta device "
         "(nothing allocated), it takes", "a pre-flight may take here"]),
}


@pytest.fixture(scope="module")
def cli_limited(tmp_path_factory):
    """The CLI in a child process under a memory limit, a fresh child for each call (faultkit.LimitedCli)."""
    limited = LimitedCli(tmp_path_factory.mktemp("limited"))
    yield limited
    limited.close(kill=False)


def sets(settings: list[str]) -> list[str]:
    return [part for setting in settings for part in ("--set", setting)]


def assert_refused(outcome, experiment, expected: list[str]) -> None:
    assert outcome.code == 2, outcome.text
    message = " ".join(outcome.err.split())  # the CLI wraps the paragraph at 100 columns
    assert message.startswith("error: ") and str(experiment) in message, message
    for phrase in expected:
        assert phrase in message, message


@pytest.mark.parametrize("case", SETTINGS)
def test_bad_setting_fails_validate_and_run_before_any_work(tmp_path, experiment, case):
    settings, expected = SETTINGS[case]
    assert_refused(cli("validate", experiment, *sets(settings)), experiment, expected)
    assert_refused(cli(*run_args(experiment, tmp_path / "run", *sets(settings))), experiment, expected)
    assert not (tmp_path / "run").exists(), "a refused experiment must not create its run directory"


@pytest.mark.parametrize("case", SIZES)
def test_a_size_beyond_its_range_fails_validate_and_run_before_anything_is_built(tmp_path, experiment, case,
                                                                                   cli_limited):
    settings, expected = SIZES[case]
    validate, run = cli_limited(["validate", experiment, *sets(settings)],
                                run_args(experiment, tmp_path / "run", *sets(settings)))
    assert_refused(validate, experiment, expected)
    assert_refused(run, experiment, expected)
    assert not (tmp_path / "run").exists(), "a refused experiment must not create its run directory"


@pytest.mark.parametrize("case", BUDGETS)
def test_sizes_past_the_machines_budget_fail_validate_and_run_before_anything_is_built(tmp_path, experiment, case,
                                                                                      cli_limited):
    settings, expected = BUDGETS[case]
    validate, run = cli_limited(["validate", experiment, *sets(settings)],
                                run_args(experiment, tmp_path / "run", *sets(settings)), timeout=60)
    assert_refused(validate, experiment, expected)
    assert_refused(run, experiment, expected)
    assert not (tmp_path / "run").exists(), "a refused experiment must not create its run directory"


@pytest.mark.parametrize("name", sorted(path.name for path in (HERE.parents[1] / "experiments").glob("*.toml")))
def test_every_shipped_experiment_validates_within_this_machines_budget(name):
    outcome = cli("validate", HERE.parents[1] / "experiments" / name)
    assert outcome.code == 0, outcome.text


def test_a_camus_release_is_held_to_the_stand_in_only_where_the_stand_in_is_read(tmp_path, experiment):
    real = tmp_path / "CAMUS"
    real.mkdir()  # validate does not load it: any release may be the real data's
    for settings in (["dataset.name=camus", 'dataset.params={release = "2019"}', f'dataset.root="{real}"'],
                     ["dataset.name=camus", 'dataset.params={release = "2023"}'],
                     ["dataset.name=camus", 'dataset.params={release = "auto"}']):
        outcome = cli("validate", experiment, *sets(settings))
        assert outcome.code == 0, (settings, outcome.text)


def test_the_tiny_experiment_itself_validates(experiment):
    outcome = cli("validate", experiment)
    assert outcome.code == 0, outcome.text
    assert "mse: pre-flight ok (loss, backward, sample, mean)" in outcome.out


def test_missing_root_without_stand_in_names_the_key(tmp_path, experiment):
    absent = tmp_path / "EchoNet-Pediatric"
    settings = sets([f'dataset.root="{absent}"', "dataset.synthetic_if_missing=false"])
    expected = [f"`dataset.root` = '{absent}' does not exist", "`dataset.synthetic_if_missing` is false"]
    assert_refused(cli("validate", experiment, *settings), experiment, expected)
    assert_refused(cli(*run_args(experiment, tmp_path / "run", *settings)), experiment, expected)
    assert not (tmp_path / "run").exists()


# The synthetic dataset named directly takes its generation parameters in dataset.params: validate checked none of
# them, and the run stopped once it came to generate (format and fraction unnamed, a negative seed as numpy's
# ValueError, exit 1).
GENERATION = {
    'format = "bogus"': "`dataset.params.format`: must be one of echonet_dynamic, echonet_pediatric, camus, got 'bogus'",
    "seed = -1": "`dataset.params.seed`: must be between 0 and 4294967295, got -1",
    "ambiguous_fraction = 5.0": "`dataset.params.ambiguous_fraction`: must be in [0, 1], got 5.0",
    "label_noise = -1.0": "`dataset.params.label_noise`: must be >= 0 EF points, got -1.0",
    f"n = {10**9}": "`dataset.params.n`: must be at least 1 and at most 100,000 videos",
}
# The synthetic dataset named directly reads its generation with its format's loader: a loader setting, protocol or
# view that loader does not have passed validate (the stand-in takes any keyword) and stopped the run after generating.
READ_AS_FORMAT = {
    ('format = "echonet_dynamic"', "dataset.protocol=fold"):
        "`dataset.protocol`: dataset 'synthetic' has no protocol 'fold'. Its protocols: official.",
    ('format = "echonet_pediatric"', "dataset.view=A2C"): "`dataset.view`: dataset 'synthetic' has no view 'A2C'.",
    ('format = "echonet_pediatric", check_vidoes = false', "dataset.protocol=fold"):
        "`dataset.params.check_vidoes` is not a parameter of dataset 'synthetic'. Did you mean 'check_videos'?",
}


@pytest.mark.parametrize("params, setting", READ_AS_FORMAT)
def test_the_synthetic_dataset_is_held_to_the_loader_of_its_format(tmp_path, experiment, params, setting):
    (tmp_path / "generated").mkdir()  # an empty root: the synthetic dataset generates into it
    settings = sets(["dataset.name=synthetic", f'dataset.root="{tmp_path / "generated"}"', setting,
                     f"dataset.params={{size = 32, workers = 1, n = 20, {params}}}"])
    expected = [READ_AS_FORMAT[params, setting]]
    assert_refused(cli("validate", experiment, *settings), experiment, expected)
    assert_refused(cli(*run_args(experiment, tmp_path / "run", *settings)), experiment, expected)
    assert not (tmp_path / "run").exists() and not any((tmp_path / "generated").iterdir())


@pytest.mark.parametrize("param", GENERATION)
def test_a_generation_parameter_of_the_synthetic_dataset_fails_validate_and_run(tmp_path, experiment, param):
    (tmp_path / "generated").mkdir()  # an empty root: the synthetic dataset generates into it
    params = ", ".join(["size = 32", "workers = 1", *([] if param.startswith("n =") else ["n = 20"]), param])
    settings = sets(["dataset.name=synthetic", f'dataset.root="{tmp_path / "generated"}"', "dataset.protocol=fold",
                     f"dataset.params={{{params}}}"])
    assert_refused(cli("validate", experiment, *settings), experiment, [GENERATION[param]])
    assert_refused(cli(*run_args(experiment, tmp_path / "run", *settings)), experiment, [GENERATION[param]])
    assert not (tmp_path / "run").exists() and not any((tmp_path / "generated").iterdir())


def test_a_heartbeat_below_a_second_is_refused_before_any_work(tmp_path, experiment, capsys):
    """The storage refused it only after the data were loaded and the run directory made, which --fresh had emptied
    first."""
    run = tmp_path / "run"
    for heartbeat in ("0", "-5", "ten"):
        with pytest.raises(SystemExit) as exit:
            main(run_args(experiment, run, "--fresh", "--storage", str(tmp_path / "optuna.db"),
                          "--heartbeat", heartbeat))
        assert exit.value.code == 2
        assert "argument --heartbeat: must be a whole number of seconds" in capsys.readouterr().err
        assert not run.exists()


def test_an_artifact_store_this_machine_cannot_use_fails_validate_and_run(tmp_path, experiment):
    """A folder that cannot be made was found only once the data were loaded and the run directory made."""
    storage = f'tune.storage="{tmp_path / "optuna.db"}"'
    expected = ["`tune.artifacts` is '/proc/nope': nothing can be created in /proc"]
    settings = sets([storage, 'tune.artifacts="/proc/nope"'])
    assert_refused(cli("validate", experiment, *settings), experiment, expected)
    assert_refused(cli(*run_args(experiment, tmp_path / "run", *settings)), experiment, expected)
    outcome = cli(*run_args(experiment, tmp_path / "run", *sets([storage]), "--artifacts", "/proc/nope"))
    assert outcome.code == 2 and "--artifacts is '/proc/nope': nothing can be created in /proc" in \
        " ".join(outcome.err.split()), outcome.text
    assert not (tmp_path / "run").exists()


def test_encoder_weights_that_do_not_fit_fail_the_preflight(tmp_path, experiment):
    import torch

    torch.save({"not_a_weight_of_tiny3d": torch.zeros(1)}, tmp_path / "foreign.pt")
    settings = sets([f'encoder.weights="{tmp_path / "foreign.pt"}"'])
    expected = ["`encoder.weights`: encoder 'tiny3d' fails the pre-flight at loading its weights", "do not fit"]
    assert_refused(cli("validate", experiment, *settings), experiment, expected)
    assert_refused(cli(*run_args(experiment, tmp_path / "run", *settings)), experiment, expected)
    assert not (tmp_path / "run").exists()


SPECLESS_ENCODER = '''
from torch import nn
from benchmark.api import load_weights_file
from registry import hookimpl


class Specless(nn.Module):  # forgets input_spec: what is wrong is its code, not a setting of the experiment
    def __init__(self, width: int = 4):
        super().__init__()
        self.feature_dim = width
        self.linear = nn.Linear(3, width)

    def forward(self, clip):
        return self.linear(clip.mean((2, 3, 4)))

    def load_weights(self, path, strict=True):
        return load_weights_file(self, path, strict=strict)


@hookimpl
def register_encoders(registry):
    registry.add("specless", Specless)
'''


@pytest.mark.parametrize("params", ["{}", "{width = 8}"])
def test_an_encoder_failing_at_its_own_defaults_is_named_by_encoder_name(experiment, write_plugin, params):
    """Not `encoder.params` (the experiment gave none, or one without which it fails as well): no setting fixes it."""
    plugin = write_plugin("specless_encoder", SPECLESS_ENCODER)
    settings = sets([f'plugins=["{plugin}"]', "encoder.name=specless", f"encoder.params={params}",
                     'encoder.pretrain.objective="none"'])
    expected = ["`encoder.name`: encoder 'specless' fails the pre-flight at forward(one clip): AttributeError",
                "no attribute 'input_spec'"]
    assert_refused(cli("validate", experiment, *settings), experiment, expected)


FIXED_INPUT_ENCODER = SPECLESS_ENCODER.replace("self.feature_dim = width", """self.feature_dim = width
        self.input_spec = InputSpec(frames=4, size=48)""").replace(
    "from benchmark.api import load_weights_file", "from benchmark.api import InputSpec, load_weights_file").replace(
    "return self.linear(clip.mean((2, 3, 4)))", """assert clip.shape[2:] == (4, 48, 48), f"got {clip.shape}"
        return self.linear(clip.mean((2, 3, 4)))""")


@pytest.mark.parametrize("clips, expected", [
    (["clips.frames=8", "clips.size=48"], "`clips.frames`: encoder 'specless' fails the pre-flight at its "
                                          "input_spec.frames: it expects clips of 4 frames, but clips.frames gives 8; "
                                          "set clips.frames = 4"),
    (["clips.frames=4", "clips.size=32"], "`clips.size`: encoder 'specless' fails the pre-flight at its "
                                          "input_spec.size: it expects clips of 48 px, but clips.size gives 32; set "
                                          "clips.size = 48 (or give the encoder a size parameter)"),
])
def test_an_encoder_declaring_other_clips_than_the_clip_settings_is_refused_naming_them(experiment, write_plugin,
                                                                                        clips, expected):
    """The clip pipeline cuts clips.frames frames whatever input_spec.frames says: the pre-flight encoded the declared
    count, passed, and the run failed in stage 1, after the data were loaded. It cuts them at input_spec.size, so an
    encoder without a size parameter ran at its own size under a protocol line stating clips.size."""
    plugin = write_plugin("fixed_input_encoder", FIXED_INPUT_ENCODER)
    settings = sets([f'plugins=["{plugin}"]', "encoder.name=specless", "encoder.params={}",
                     'encoder.pretrain.objective="none"', *clips])
    assert_refused(cli("validate", experiment, *settings), experiment, [expected])
    assert cli("validate", experiment, *sets([*settings[1::2], "clips.frames=4", "clips.size=48"])).code == 0


MINIMAL_DATASET = '''
from registry import hookimpl


class Minimal:  # reads no view and has no strict mode
    protocols = ("official",)
    tabular_columns = {}

    def __init__(self, root):
        self.root = root

    def load(self):
        raise AssertionError("validate loads no data")

    def splits(self, index, protocol, **options):
        raise AssertionError("validate loads no data")


@hookimpl
def register_datasets(registry):
    registry.add("minimal", Minimal)
'''


@pytest.mark.parametrize("setting, expected", [
    ("dataset.strict=true", "`dataset.strict` = true, but dataset 'minimal' has no 'strict' parameter, so it would be "
                            "ignored; leave it out"),
    ('dataset.view="PSAX"', "`dataset.view` = \"PSAX\", but dataset 'minimal' has no 'view' parameter"),
])
def test_a_dataset_setting_the_dataset_would_not_read_is_refused(experiment, write_plugin, setting, expected):
    """A plugin's dataset without `strict`: `dataset.strict = true` passed and every damaged item was still excluded."""
    plugin = write_plugin("minimal_dataset", MINIMAL_DATASET)
    settings = sets([f'plugins=["{plugin}"]', "dataset.name=minimal", 'dataset.root="/nonexistent"',
                     "dataset.synthetic_if_missing=false", "models.0.fusion=none", "models.1.fusion=none", setting])
    assert_refused(cli("validate", experiment, *settings), experiment, [expected])


# ----------------------------------------------------------------------------------------- pre-flight
BROKEN_HEADS = '''
import torch
from torch import nn
from registry import hookimpl


class Base(nn.Module):
    def __init__(self, condition_dim: int):
        super().__init__()
        self.linear = nn.Linear(condition_dim, 1)

    def loss(self, condition, target):
        return ((self.linear(condition)[:, 0] - target) ** 2).mean()

    def sample(self, condition, n):
        return self.linear(condition).expand(-1, n)


class Transposed(Base):
    def sample(self, condition, n):
        return self.linear(condition).expand(-1, n).T  # (n, B): right only by accident when n == B


class NaNLoss(Base):
    def loss(self, condition, target):
        return super().loss(condition, target) * float("nan")


class NoGradient(Base):
    def loss(self, condition, target):
        return (self.linear(condition)[:, 0] - target).detach().pow(2).mean()


class DetachedCondition(Base):  # trains itself, but the fusion before it never learns (stays at its initialisation)
    def loss(self, condition, target):
        return super().loss(condition.detach(), target)


class WrongMean(Base):
    def mean(self, condition):
        return self.linear(condition)  # (B, 1) instead of (B,)


@hookimpl
def register_heads(registry):
    for name, head in (("transposed", Transposed), ("nan_loss", NaNLoss), ("no_gradient", NoGradient),
                       ("detached_condition", DetachedCondition), ("wrong_mean", WrongMean)):
        registry.add(name, head)
    registry.add("plain", Base)  # sound, and without a search space
'''

PREFLIGHT = {
    "transposed": "fails the pre-flight at sample(condition, 5): head 'broken': sample(condition, 5) returned "
                  "shape (5, 3), expected (3, 5)",
    "nan_loss": "fails the pre-flight at loss(condition, target): the loss of a random batch is nan",
    "no_gradient": "fails the pre-flight at loss.backward(): RuntimeError: element 0 of tensors does not require grad",
    "detached_condition": "fails the pre-flight at loss.backward(): no parameter of the fusion received a gradient",
    "wrong_mean": "fails the pre-flight at mean(condition): head 'broken': mean(condition) returned shape (3, 1), "
                  "expected (3,)",
}


MISSPELT_SPACE_HEAD = BROKEN_HEADS.replace(
    '    registry.add("plain", Base)',
    '    registry.add("misspelt_space", Base, search_space={"widht": Categorical((8, 16))})\n'
    '    registry.add("plain", Base)').replace("import hookimpl", "import Categorical, hookimpl")


def test_a_heads_default_search_space_key_that_is_no_parameter_fails_validate_and_run(tmp_path, experiment,
                                                                                       write_plugin):
    """It passed, and every trial failed ('unexpected keyword argument') once stage 1 and the features were done."""
    plugin = write_plugin("broken_heads", MISSPELT_SPACE_HEAD)
    settings = sets([f'plugins=["{plugin}"]', "models.0.head=misspelt_space", "tune.trials=2"])
    expected = ["`models[0].head`: head 'misspelt_space' (file", "declares the default search-space key 'widht', "
                "which is neither a trainer setting nor a parameter of it."]
    assert_refused(cli("validate", experiment, *settings), experiment, expected)
    assert_refused(cli(*run_args(experiment, tmp_path / "run", *settings)), experiment, expected)
    assert not (tmp_path / "run").exists()
    assert cli("validate", experiment, *settings[:-2], "--set", "tune.trials=0").code == 0  # unused: not its concern


@pytest.mark.parametrize("head", PREFLIGHT)
def test_broken_head_fails_the_preflight_naming_model_and_contract_point(tmp_path, experiment, write_plugin, head):
    plugin = write_plugin("broken_heads", BROKEN_HEADS)
    settings = sets([f'plugins=["{plugin}"]', f"models.0.head={head}", 'models.0.label="broken"'])
    expected = [f"model 'broken' (head '{head}', fusion 'concat')", PREFLIGHT[head]]
    assert_refused(cli("validate", experiment, *settings), experiment, expected)
    assert_refused(cli(*run_args(experiment, tmp_path / "run", *settings)), experiment, expected)
    assert not (tmp_path / "run").exists()


def test_transposed_samples_pass_the_jobs_shape_check_when_k_equals_the_batch():
    """Why the pre-flight asks for n != B: with K == B a transposed (K, B) output has the shape (B, K)."""
    import torch

    transposed = torch.arange(9.0).reshape(3, 3).T
    assert checked("h", "sample", transposed, (3, 3), finite=True) is transposed


# ----------------------------------------------------------------------------------------- plugins
def test_hook_without_hookimpl_is_named_in_a_warning(experiment, write_plugin):
    plugin = write_plugin("forgetful", "def register_heads(registry):\n    registry.add('never', object)\n")
    outcome = cli("validate", experiment, "--set", f'plugins=["{plugin}"]')
    assert outcome.code == 0, outcome.text
    assert (f"warning: plugin 'forgetful' (file {plugin}) defines register_heads() without @hookimpl, so it is "
            "never called" in " ".join(outcome.err.split()))


# ----------------------------------------------------------------------------------------- validate --data
def test_validate_data_prints_counts_splits_exclusions_and_tracings(tmp_path, experiment):
    from fakedata import make_pediatric, truncate

    tree = make_pediatric(tmp_path / "data", n_patients=20, views=("A4C",))
    truncate(tree.videos[tree.ids[0]])
    outcome = cli("validate", experiment, "--data", "--set", f'dataset.root="{tree.root}"')
    assert outcome.code == 0, outcome.text
    out = outcome.out
    assert "19 items of 19 patients at" in out
    assert "split fold0: train 16 items / 16 patients, val 2 items / 2 patients, test 1 items / 1 patients" in out
    assert "excluded 1: truncated video: 1" in out
    assert "tracings: 19 of 19 items traced (100%), 32 traced frames" in out


def test_run_checks_the_data_before_creating_its_directory(tmp_path, experiment):
    from fakedata import make_pediatric, set_cell

    tree = make_pediatric(tmp_path / "data", n_patients=20, views=("A4C",))
    set_cell(tree.labels, tree.ids[3], "Split", "TRAIN")  # Pediatric folds are integers
    outcome = cli(*run_args(experiment, tmp_path / "run", "--set", f'dataset.root="{tree.root}"'))
    assert outcome.code == 1 and "is not an integer fold 0-9" in " ".join(outcome.err.split()), outcome.text
    assert not (tmp_path / "run").exists()


def test_a_misspelt_tabular_column_stops_validate_data_and_run_before_the_stand_in_is_generated(tmp_path, experiment):
    fresh = tmp_path / "synthetic"  # no generation there yet: loading the data would make one
    settings = sets([f'synthetic.root="{fresh}"', 'dataset.tabular=["Wieght"]'])
    expected = ["`dataset.tabular`: echonet_pediatric has no tabular column 'Wieght'; Did you mean 'Weight'?"]
    assert_refused(cli("validate", experiment, "--data", *settings), experiment, expected)
    assert_refused(cli(*run_args(experiment, tmp_path / "run", *settings)), experiment, expected)
    assert not list(fresh.glob("echonet_pediatric-*")), "the stand-in was generated for a refused experiment"
    assert not (tmp_path / "run").exists()


def test_tabular_column_of_an_undeclaring_dataset_fails_at_the_data_before_the_run_directory(tmp_path, experiment):
    """A dataset without a ``tabular_columns`` declaration (here the synthetic one named directly, generating into
    an empty root) has its columns known once loaded: ``validate --data`` and ``run`` check them there."""
    (tmp_path / "generated").mkdir()
    settings = sets(["dataset.name=synthetic", f'dataset.root="{tmp_path / "generated"}"', "dataset.protocol=fold",
                     "dataset.params={n = 20, size = 32, workers = 1}", 'dataset.tabular=["agee"]'])
    assert cli("validate", experiment, *settings).code == 0
    expected = ["`dataset.tabular`: synthetic has no tabular column 'agee'; Did you mean 'Age'?"]
    assert_refused(cli("validate", experiment, "--data", *settings), experiment, expected)
    assert_refused(cli(*run_args(experiment, tmp_path / "run", *settings)), experiment, expected)
    assert not (tmp_path / "run").exists()


HAND_MADE_DATASET = '''
from pathlib import Path

from benchmark.contracts import DatasetIndex, Item, Split
from registry import hookimpl

FAULTS = {
    "repeated id": lambda number: {"id": "v1.avi"} if number == 2 else {},
    "number id": lambda number: {"id": number},
    "EF as a fraction": lambda number: {"ef": 0.3 + number / 100},
    "NaN EF": lambda number: {"ef": float("nan")} if number == 3 else {},
    "number subgroup": lambda number: {"subgroups": {"scanner": number}},
}


class HandMade:
    """Items listed by hand, one fault in them."""
    protocols = ("official",)
    tabular_columns = {}

    def __init__(self, root, fault):
        self.root, self.fault = Path(root), fault

    def load(self):
        for number in range(6):  # bytes to name the results by: only the items are wrong
            (self.root / f"v{number}.avi").write_bytes(bytes([number]))
        items = [Item(**{"id": f"v{number}.avi", "patient": f"p{number}", "ef": 50.0 + number,
                         "video": self.root / f"v{number}.avi", "fold": "", **FAULTS[self.fault](number)})
                 for number in range(6)]
        return DatasetIndex(items=tuple(items))

    def splits(self, index, protocol, **options):
        roles = ("train", "train", "train", "train", "val", "test")
        return [Split("official", {item.id: role for item, role in zip(index.items, roles)})]


@hookimpl
def register_datasets(registry):
    registry.add("hand_made", HandMade)
'''


@pytest.mark.parametrize("fault, expected", [
    ("repeated id", "item 'v1.avi' appears twice (ids must be unique)"),
    ("number id", "items[0].id 0 is not a non-empty str"),
    ("EF as a fraction", "every ef is at most 1 (the largest is 0.35): EF is in percent (55, not 0.55)"),
    ("NaN EF", "item 'v3.avi': ef nan is not a number in [0, 100] (EF is in percent)"),
    ("number subgroup", "item 'v0.avi': subgroups['scanner'] = 0: subgroup names and values are str"),
])
def test_a_plugin_datasets_items_that_break_the_contract_are_refused_naming_item_and_field(
        tmp_path, experiment, write_plugin, fault, expected):
    """A plugin's load() is held to the contract: a repeated id kept one of its items without a word (items are looked
    up by id), a number id stopped the run with a TypeError, and EF given as a fraction was trained and scored."""
    plugin = write_plugin("hand_made_dataset", HAND_MADE_DATASET)
    settings = sets([f'plugins=["{plugin}"]', "dataset.name=hand_made", f'dataset.root="{tmp_path}"',
                     "dataset.synthetic_if_missing=false", f'dataset.params={{fault = "{fault}"}}',
                     "models.0.fusion=none", "models.1.fusion=none"])
    for outcome in (cli("validate", experiment, "--data", *settings),
                    cli(*run_args(experiment, tmp_path / "run", *settings))):
        message = " ".join(outcome.err.split())
        assert outcome.code == 1, outcome.text
        assert f"dataset 'hand_made' (file {plugin}): load() broke the dataset contract" in message, message
        assert expected in message, message
    assert not (tmp_path / "run").exists()


def test_mixed_precision_that_this_machine_leaves_off_is_named_in_a_warning(tmp_path, experiment, monkeypatch):
    """`amp = true` with `device = "auto"` on a machine without CUDA trained in float32 without a word."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    warning = ('warning: {}: `train.amp` is mixed precision on CUDA, and `train.device` = "auto" is the CPU on this '
               "machine: it is off here").format(experiment)
    outcome = cli("validate", experiment, "--set", "train.amp=true")
    assert outcome.code == 0 and warning in " ".join(outcome.err.split()), outcome.text
    taken = tmp_path / "taken"
    taken.write_text("a file where the run directory would go")  # stops the run right after the machine's checks
    outcome = cli(*run_args(experiment, taken, "--set", "train.amp=true"))
    assert outcome.code == 2 and warning in " ".join(outcome.text.split()), outcome.text
    assert warning not in " ".join(cli("validate", experiment).err.split())


def test_nll_tunes_models_that_give_it_and_is_free_while_nothing_is_tuned(experiment, write_plugin):
    """tune.metric is held to the models tuning would score with it, and only to them."""
    plugin = write_plugin("broken_heads", BROKEN_HEADS)  # its "plain" head is a point head with nothing to tune
    for settings in (['tune.metric="nll"'],  # no trials
                     ["tune.trials=2", 'tune.metric="nll"', "models.0.head=mdn"],  # both heads have log_prob
                     ["tune.trials=2", 'tune.metric="nll_kde"', "models.0.head=quantile"],  # both have a spread
                     ["tune.trials=2", 'tune.metric="nll"', f'plugins=["{plugin}"]', "models.0.head=plain",
                      "models.0.fusion=none"]):  # trained untuned
        outcome = cli("validate", experiment, *sets(settings))
        assert outcome.code == 0, (settings, outcome.text)


def test_a_model_with_nothing_to_tune_is_named_and_trained_untuned(tmp_path, experiment, write_plugin):
    """tune.trials = 2 for a head and fusion without a search space would run two identical trials."""
    plugin = write_plugin("broken_heads", BROKEN_HEADS)  # its "plain" head is sound
    settings = sets([f'plugins=["{plugin}"]', "models.0.head=plain", 'models.0.label="plain"',
                     'models.0.fusion="none"', "tune.trials=2", "tune.epochs=1"])
    warning = "`models[0]` (plain): nothing to tune (neither head 'plain' nor fusion 'none' has a search space"
    outcome = cli("validate", experiment, *settings)
    assert outcome.code == 0 and warning in " ".join(outcome.text.split()), outcome.text
    outcome = cli(*run_args(experiment, tmp_path / "run", *settings))
    assert outcome.code == 0 and warning in " ".join(outcome.text.split()), outcome.text
    assert not list((tmp_path / "run").glob("tuning/plain__*")), "a model with nothing to tune was tuned"
    assert list((tmp_path / "run").glob("tuning/*")), "the other models are tuned as before"


def test_a_search_space_that_will_not_be_used_is_named(experiment):
    """A search_space is only read by tuning: with no trials, or on a model that does not train, it would be
    ignored without a word, and the user would believe the model tuned."""
    space = 'models.0.search_space={lr = {float = [1e-4, 1e-2], log = true}}'
    for settings, why in (([space], "`tune.trials` is 0"),
                          ([space, "tune.trials=2", "models.0.head=oracle", "models.0.fusion=none"],
                           "head 'oracle' does not train")):
        outcome = cli("validate", experiment, *sets(settings))
        assert outcome.code == 0, outcome.text
        assert f"`models[0].search_space` (mse) is not used: {why}, so the model is not tuned" in \
            " ".join(outcome.text.split()), outcome.text
    outcome = cli("validate", experiment, *sets([space, "tune.trials=2"]))
    assert outcome.code == 0 and "is not used" not in outcome.text, outcome.text


UNREAD = [  # (settings, what validate says): a parameter the head would ignore with every value its option can take
    (['models.0.head="mcsdr"', 'models.0.params={sampler = "ddpm", steps = 20}'],
     ("`models[0].params.steps`: head 'mcsdr' reads steps only with sampler = 'ddim', and sampler is 'ddpm' "
      "(`models[0].params.sampler` sets it)")),
    (['models.0.head="mcsdr"', 'models.0.params={predictor = "mlp", heads = 4}', "tune.trials=2"],
     ("`models[0].params.heads`: head 'mcsdr' reads heads only with predictor = 'legacy_attention' or "
      "'deep_attention', and predictor is 'mlp'")),  # fixed in params, so the default space no longer tunes it
    (['models.0.head="mcsdr"', 'models.0.search_space={layers = {int = [1, 4]}}', "tune.trials=2",
      'models.0.params={predictor = "mlp"}'], "`models[0].search_space.layers`: head 'mcsdr' reads layers only"),
    (['models.0.head="card"', "models.0.params={steps = 20}"],
     ("`models[0].params.steps`: head 'card' reads steps only with sampler = 'ddim', and sampler is 'ddpm' (its "
      "default)")),
]


@pytest.mark.parametrize("settings, expected", UNREAD)
def test_a_parameter_the_head_would_not_read_is_refused(experiment, settings, expected):
    assert_refused(cli("validate", experiment, *sets(settings)), experiment, [expected])


def test_a_parameter_read_with_some_value_its_option_can_take_passes(experiment):
    for settings in (['models.0.head="mcsdr"', 'models.0.params={predictor = "deep_attention", layers = 2}'],
                     ['models.0.head="mcsdr"', "models.0.params={layers = 2}", "tune.trials=2"],  # tuned predictor
                     ['models.0.head="card"', 'models.0.params={sampler = "ddim", steps = 5}']):
        outcome = cli("validate", experiment, *sets(settings))
        assert outcome.code == 0, (settings, outcome.text)


def test_evaluate_metrics_are_found_by_name_or_label_in_any_case_as_tune_metric_is(experiment):
    outcome = cli("validate", experiment, *sets(['evaluate.metrics=["CRPS", "mae"]', 'tune.metric="CRPS"']))
    assert outcome.code == 0, outcome.text
    assert_refused(cli("validate", experiment, *sets(['evaluate.metrics=["crsp"]'])), experiment,
                   ["`evaluate.metrics[0]`", "Did you mean"])


def test_a_checkpoint_that_is_no_file_or_no_checkpoint_is_refused_naming_the_key(tmp_path, experiment):
    """A folder or a device was reported as "does not exist", and a file that is no checkpoint without the key, as
    one to unpickle in full with --trust-checkpoint."""
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    for where, said in ((tmp_path, f"{tmp_path} is a folder"), ("/dev/null", "/dev/null is not a regular file"),
                        (tmp_path / "gone.pth", f"{tmp_path / 'gone.pth'} does not exist"),
                        (tmp_path / "notes.txt", f"cannot read weight file {tmp_path / 'notes.txt'}: it is not a "
                                                 "PyTorch checkpoint")):
        settings = sets([f'models.0.checkpoint="{where}"'])
        expected = [f"`models[0].checkpoint`: {said}"]
        assert_refused(cli("validate", experiment, *settings), experiment, expected)
    assert_refused(cli(*run_args(experiment, tmp_path / "run", *settings)), experiment, expected)
    assert not (tmp_path / "run").exists()


def test_a_run_directory_that_cannot_be_one_is_refused_before_the_data_are_loaded(tmp_path, experiment, synthetic_root):
    """--out naming a file, or a place where no folder can be made, stopped the run with exit 1 only once the data
    were loaded (the stand-in generated)."""
    (tmp_path / "report.pdf").write_bytes(b"%PDF")
    for out, phrase in ((tmp_path / "report.pdf", "is a file, not a folder"),
                        (Path("/proc/nope/run"), "nothing can be created in /proc")):
        outcome = cli(*run_args(experiment, out))
        said = " ".join(outcome.err.split())
        assert outcome.code == 2 and f"--out: {out}" in said and phrase in said, outcome.text
        assert "dataset" not in outcome.out, "nothing may be loaded before the run directory is found sound"
    assert (tmp_path / "report.pdf").read_bytes() == b"%PDF"


def test_an_artifact_store_without_a_storage_is_named_as_unused(experiment, tmp_path):
    outcome = cli("validate", experiment, *sets([f'tune.artifacts="{tmp_path / "shared"}"']))
    assert outcome.code == 0, outcome.text
    assert "`tune.artifacts` is used only by workers sharing a storage, and `tune.storage` is empty" in \
        " ".join(outcome.text.split()), outcome.text


MISSPELT_NEED = '''
from benchmark.api import add_metric
from registry import hookimpl


def sharpness(items, weights):
    return weights @ items["std"] / weights.sum(axis=1)


@hookimpl
def register_metrics(registry):
    add_metric(registry, "sharp", sharpness, label="Sharp", direction="min", probabilistic=True, order=90,
               description="mean predictive std", needs=("log_porb",))
'''


def test_a_metrics_misspelt_need_is_named_as_the_metrics_not_the_heads(experiment, write_plugin):
    """A plugin metric whose ``needs`` no head could have is refused naming the metric and the closest need, even
    with nothing tuned: before, every tuned head was blamed for lacking it."""
    plugin = write_plugin("sharp_metric", MISSPELT_NEED)
    for settings in (["tune.trials=2"], []):
        outcome = cli("validate", experiment, *sets([f'plugins=["{plugin}"]', 'tune.metric="sharp"', *settings]))
        message = " ".join(outcome.err.split())
        assert outcome.code == 2, outcome.text
        assert (f"`tune.metric`: metric 'sharp' (file {plugin}) needs 'log_porb', which is neither a closed form"
                in message), message
        assert "Did you mean 'log_prob'?" in message and "does not declare" not in message, message


REQUIRED_PARAMETER = '''
from torch import nn
from registry import hookimpl


class Scaled(nn.Module):
    def __init__(self, condition_dim: int, scale: float):
        super().__init__()
        self.linear, self.scale = nn.Linear(condition_dim, 1), scale

    def loss(self, condition, target):
        return ((self.linear(condition)[:, 0] * self.scale - target) ** 2).mean()

    def sample(self, condition, n):
        return (self.linear(condition) * self.scale).expand(-1, n)


@hookimpl
def register_heads(registry):
    registry.add("scaled", Scaled)
'''


def test_a_head_parameter_without_a_default_is_named_when_the_experiment_does_not_give_it(experiment, write_plugin):
    """Named by its key, before the pre-flight would stop at Python's "missing 1 required positional argument";
    given in params it passes, and tuned too."""
    plugin = write_plugin("scaled_head", REQUIRED_PARAMETER)
    model = ['models=[{head = "scaled", label = "scaled"}]', 'baseline="scaled"', f'plugins=["{plugin}"]']
    outcome = cli("validate", experiment, *sets(model))
    assert outcome.code == 2, outcome.text
    assert (f"`models[0].params.scale`: head 'scaled' (file {plugin}) requires 'scale' (it has no default); set it "
            "in `models[0].params`.") in " ".join(outcome.err.split()), outcome.err
    given = ('models=[{head = "scaled", label = "scaled", params = {scale = 2.0}, '
             'search_space = {lr = {float = [1e-4, 1e-2]}}}]')
    for trials in (0, 2):
        outcome = cli("validate", experiment, *sets([*model[1:], given, f"tune.trials={trials}"]))
        assert outcome.code == 0, (trials, outcome.text)


FLAG_NEED = '''
from benchmark.api import add_metric
from plugins.heads.gaussian import GaussianHead
from registry import hookimpl


def spread(items, weights):
    return weights @ items["std"] / weights.sum(axis=1)


@hookimpl
def register_heads(registry):
    registry.add("calibrated_gaussian", GaussianHead, metadata={"probabilistic": True, "calibrated": 1})


@hookimpl
def register_metrics(registry):
    add_metric(registry, "spread", spread, label="Spread", direction="min", probabilistic=True, order=90,
               description="mean predictive std", needs=("calibrated",))
'''


def test_a_metrics_need_that_a_head_flags_with_a_truthy_value_is_known(experiment, write_plugin):
    """A head flags a capability by a true value in its metadata (`calibrated = 1` is a head that has it, as tuning
    tests it): a metric needing it is not a misspelling. The need check counted only `True` and refused the
    experiment, naming a need a registered head has."""
    plugin = write_plugin("calibrated", FLAG_NEED)
    settings = [f'plugins=["{plugin}"]', 'tune.metric="spread"', "tune.trials=2",
                *(f'models.{index}.head="calibrated_gaussian"' for index in (0, 1))]
    outcome = cli("validate", experiment, *sets(settings))
    assert outcome.code == 0 and "neither a closed form" not in outcome.text, outcome.text


def test_a_default_search_range_that_does_not_suit_the_models_fixed_params_fails_validate(experiment):
    """mcsdr's default `steps` range (up to 50) with `timesteps = 20` fixed: trials past 20 steps would fail after
    stage 1 and the features. A range of the model's own that fits, or tuning off, passes; one that does not fit is
    named under its search_space key."""
    model = 'models=[{head = "mcsdr", label = "m", params = {timesteps = 20}%s}]'
    outcome = cli("validate", experiment, *sets([model % "", 'baseline="m"', "tune.trials=2"]))
    message = " ".join(outcome.err.split())
    assert outcome.code == 2, outcome.text
    assert ("`models[0].params`: tuning searches the default range of head 'mcsdr' for 'steps', which can give 50 "
            'with {"timesteps": 20}: must be between 1 and timesteps (20) for DDIM, got 50.') in message, message
    for extra, trials, code in ((", search_space = {steps = {int = [5, 20]}}", 2, 0), ("", 0, 0),
                                (", search_space = {steps = {int = [5, 30]}}", 2, 2)):
        outcome = cli("validate", experiment, *sets([model % extra, 'baseline="m"', f"tune.trials={trials}"]))
        assert outcome.code == code, (extra, outcome.text)
    assert "`models[0].search_space.steps` can give 30: must be between 1 and timesteps (20)" in " ".join(
        outcome.err.split()), outcome.err
