"""Human-in-the-loop RL in the HIL-SERL style (Luo et al. 2024): RLPD/SAC from demos and interventions.

Modules: ``config`` (typed run configs), ``spaces`` (contract <-> RL observation/action),
``buffer`` (replay buffers, 50/50 demo/online batches, zarr persistence), ``agent`` (SAC/RLPD),
``classifier`` (reward classifier), ``loop`` (in-process training on the twin). Importing this
package imports nothing heavy.
"""
