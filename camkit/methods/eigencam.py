"""Eigen-CAM (Muhammad & Yeasin, "Eigen-CAM: Class Activation Map using Principal Components",
IJCNN 2020) and Eigen-Grad-CAM (pytorch-grad-cam)."""
from __future__ import annotations

from camkit.methods import register
from camkit.methods.base import LayerMaps, Method, Session, needed
from camkit.methods.weighted import first_component


@register("eigencam")
class EigenCAM(Method):
    r"""The first principal component of the activations: class-agnostic, no gradients.

    .. math:: X = [A_k(x, y)]_{(x,y),k} - \text{mean over positions},\quad X = U S V^\top,\quad
              M(x, y) = (X v_1)_{(x,y)}

    The same map for every explained class.  The SVD's sign is fixed so that M correlates
    positively with :math:`\sum_k A_k` (see :func:`camkit.methods.weighted.first_component`).

    >>> e = camkit.explain(model, images, method="eigencam")   # doctest: +SKIP
    """

    needs_gradients = False
    spatial_ranks = (1, 2, 3)

    def weighted_maps(self, session: Session) -> LayerMaps:
        """The activations, repeated for each class: their first principal component is the map."""
        result = session.forward(gradients=False)
        k = session.classes.shape[1]
        return {name: acts[:, None].expand(-1, k, *acts.shape[1:]) for name, acts in result.activations.items()}

    def __call__(self, session: Session) -> LayerMaps:
        """First principal component of the activations, the same for every class."""
        result = session.forward(gradients=False)
        k = session.classes.shape[1]
        return {name: first_component(acts, session.rank)[:, None].expand(-1, k, *acts.shape[2:]).contiguous()
                for name, acts in result.activations.items()}


@register("eigengradcam")
class EigenGradCAM(Method):
    r"""The first principal component of gradient × activation (class-specific).

    .. math:: X^c = \Big[\frac{\partial S_c}{\partial A_k(x,y)} A_k(x, y)\Big]_{(x,y),k}
              - \text{mean over positions},\quad M_c = X^c v^c_1

    (pytorch-grad-cam's ``EigenGradCAM``; sign fixed as for Eigen-CAM).  Equals HiResCAM with
    ``smooth="eigen"``.

    >>> e = camkit.explain(model, images, method="eigengradcam")   # doctest: +SKIP
    """

    spatial_ranks = (1, 2, 3)

    def weighted_maps(self, session: Session) -> LayerMaps:
        """``∂S_c/∂A ⊙ A`` (B, K, C, *grid): their first principal component is the map."""
        result = session.forward(gradients=True)
        gradients = needed(result.gradients)
        return {name: gradients[name] * acts[:, None] for name, acts in result.activations.items()}

    def __call__(self, session: Session) -> LayerMaps:
        """First principal component of gradient × activation, per class."""
        return {name: first_component(weighted, session.rank) for name, weighted in self.weighted_maps(session).items()}
