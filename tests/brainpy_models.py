"""Small brainpy.state networks, written as a brainpy user writes them
(nothing BrainScale-specific): input -> weights -> [synapse] -> neuron ->
linear readout. Each builder returns ``(model, dt)``; the model's call is
one time step for one sample of ``N_IN`` input spikes."""
import braintools
import brainstate
import brainunit as u
import brainpy.state as bp

N_IN, N, N_OUT = 4, 6, 2


def _linear(n_in, n_out, scale, unit=u.UNITLESS, bias=0.1):
    return brainstate.nn.Linear(n_in, n_out,
                                w_init=braintools.init.KaimingNormal(scale=scale, unit=unit),
                                b_init=braintools.init.Constant(bias * unit))


class NeuronNet(brainstate.nn.Module):
    """x -> Linear -> neuron (fed a current) -> Linear readout."""

    def __init__(self, neuron, unit, scale, bias=0.1):
        super().__init__()
        self.fc = _linear(N_IN, N, scale, bias=bias)
        self.neuron = neuron
        self.unit = unit
        self.readout = _linear(N, N_OUT, 1.0)

    def update(self, x):
        return self.readout(self.neuron(self.fc(x) * self.unit))


class AlignPostNet(brainstate.nn.Module):
    """x -> AlignPostProj(Linear, synapse, CUBA) -> LIF -> readout."""

    def __init__(self, syn_desc, scale):
        super().__init__()
        self.lif = bp.LIF(N, tau=5. * u.ms, V_th=1. * u.mV)
        self.proj = bp.AlignPostProj(comm=_linear(N_IN, N, scale, u.mS), syn=syn_desc,
                                     out=bp.CUBA.desc(),
                                     post=self.lif)
        self.readout = _linear(N, N_OUT, 1.0)

    def update(self, x):
        self.proj(x)
        return self.readout(self.lif())


class ShortTermNet(brainstate.nn.Module):
    """x spikes -> STD / STP (presynaptic resources) -> Linear -> LIF -> readout."""

    def __init__(self, stp, scale):
        super().__init__()
        self.stp = stp
        self.fc = _linear(N_IN, N, scale)
        self.lif = bp.LIF(N, tau=5. * u.ms, V_th=1. * u.mV)
        self.readout = _linear(N, N_OUT, 1.0)

    def update(self, x):
        return self.readout(self.lif(self.fc(self.stp(x)) * u.mA))


class ParamMatmulNet(brainstate.nn.Module):
    """Weights in plain ParamStates used in a matmul, units on the weight."""

    def __init__(self, scale):
        super().__init__()
        w = braintools.init.KaimingNormal(scale=scale)((N_IN, N))
        self.w = brainstate.ParamState(w * u.mA)
        self.lif = bp.LIF(N, tau=5. * u.ms, V_th=1. * u.mV)
        self.w_out = brainstate.ParamState(braintools.init.KaimingNormal()((N, N_OUT)))

    def update(self, x):
        return self.lif(x @ self.w.value) @ self.w_out.value


def lif():
    return NeuronNet(bp.LIF(N, tau=5. * u.ms, V_th=1. * u.mV), u.mA, 20.0), 0.5 * u.ms


def alif():
    return NeuronNet(bp.ALIF(N, tau=5. * u.ms, tau_a=50. * u.ms, beta=0.2 * u.mV),
                     u.mA, 20.0), 0.5 * u.ms


def izhikevich():
    return NeuronNet(bp.Izhikevich(N), u.mV / u.ms, 10.0, bias=30.0), 0.5 * u.ms


def gif():
    return NeuronNet(bp.Gif(N), u.mA, 10.0, bias=1.1), 0.5 * u.ms


def expif():
    return NeuronNet(bp.ExpIF(N, V_th=-50. * u.mV), u.mA, 10.0, bias=12.0), 0.5 * u.ms


def adexif():
    return (NeuronNet(bp.AdExIF(N, a=0.1 * u.siemens, b=0.5 * u.mA), u.mA, 10.0, bias=12.0),
            0.5 * u.ms)


def expon():
    return AlignPostNet(bp.Expon.desc(N, tau=5. * u.ms), 40.0), 0.5 * u.ms


def dual_expon():
    return AlignPostNet(bp.DualExpon.desc(N, tau_decay=5. * u.ms, tau_rise=1. * u.ms),
                        40.0), 0.5 * u.ms


def std():
    return ShortTermNet(bp.STD(N_IN, tau=20. * u.ms, U=0.3), 200.0), 0.5 * u.ms


def stp():
    return (ShortTermNet(bp.STP(N_IN, U=0.2, tau_f=50. * u.ms, tau_d=20. * u.ms), 200.0),
            0.5 * u.ms)


def param_matmul():
    return ParamMatmulNet(4.0), 0.5 * u.ms


MODELS = {f.__name__: f for f in (lif, alif, izhikevich, gif, expif, adexif, expon, dual_expon,
                                  std, stp, param_matmul)}
