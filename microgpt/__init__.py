"""Karpathy's microgpt rebuilt step by step, from scalars to tensors to GPUs.

The package is laid out like the book: a chapter's code is in one module, two at most.

=======  ===========================  ==================================================
chapter  subject                      modules
=======  ===========================  ==================================================
1        the data and the tokenizer   :mod:`~microgpt.data`
2        autograd on scalars          :mod:`~microgpt.autograd`
3-4      model, training, sampling    :mod:`~microgpt.scalar`, :mod:`~microgpt.config`
5-6      the model on tensors         :mod:`~microgpt.model`
7        the names loop, batched      :mod:`~microgpt.names`
8        devices, dtypes, memory      :mod:`~microgpt.device`
9        tiny-shakespeare as blocks   :mod:`~microgpt.text`
10       the training loop            :mod:`~microgpt.train`, :mod:`~microgpt.config`
11       checkpoints                  :mod:`~microgpt.checkpoint`
12       generation                   :mod:`~microgpt.sample`
13       speed                        :mod:`~microgpt.bench`, :mod:`~microgpt.roofline`
14       several processes            :mod:`~microgpt.distributed`
=======  ===========================  ==================================================

Around them: :mod:`~microgpt.cli` (the command line, pure Python) and
:mod:`~microgpt.cli_torch` (its commands that need PyTorch), :mod:`~microgpt.doctor`
(the environment report), :mod:`~microgpt.ladders` and :mod:`~microgpt.timing` (what
the bench measures, and how), and :mod:`~microgpt.book` (the book's figure and
recorded results). Part I's modules (``data``, ``autograd``, ``config``, ``scalar``
and the command line) never import PyTorch.
"""

__version__ = "0.1.0"
